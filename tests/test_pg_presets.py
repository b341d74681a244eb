"""DPO's presets (coopmarl.experiments.policy_gradient): one end-to-end run at a tiny scale, and the
option errors a user gets before anything trains."""

import pickle
import re

import numpy as np
import pytest

from coopmarl.config import ConfigError
from coopmarl.experiments import list_experiments, run_experiment

PG_PRESETS = ("dpo-stochastic-game", "dpo-dtarget", "dpo-delta-omega", "dpo-mpe", "dpo-ablation", "dpo-smax",
              "dpo-mabrax")


def test_presets_are_registered_with_a_scale_and_seeds():
    experiments = {e.name: e for e in list_experiments()}
    for name in PG_PRESETS:
        assert name in experiments, name
        assert experiments[name].options["scale"][0] == "cpu"
        assert "seeds" in experiments[name].options and "steps" in experiments[name].options


@pytest.mark.slow  # ~110 s: five cells compiled; the policy-gradient preset path also runs in test_experiments
def test_stochastic_game_preset_end_to_end(tmp_path):
    """Both variants side by side on a game given as a file in the authors' pickle format."""
    rng = np.random.default_rng(0)
    trans = rng.random((4, 2, 2, 4))
    game = tmp_path / "game.pkl"
    game.write_bytes(pickle.dumps({"reward": rng.uniform(-5, 5, (4, 2, 2)), "trans_mat": trans / trans.sum(-1, keepdims=True)}))
    opts = {"steps": "160", "seeds": "2", "game": f"tabular:{game}", "algos": "dpo,ippo,iql", "variant": "both"}
    report, out = run_experiment("dpo-stochastic-game", tmp_path / "sg", opts)
    table = (out / "table.md").read_text()
    rows = [line.split("|")[1].strip() for line in report.table.splitlines()[2:]]
    assert rows == ["DPO (paper)", "IPPO (paper)", "IQL", "DPO (authors)", "IPPO (authors)"]
    assert "nan" not in report.table  # IQL (no policy table): its greedy column is "—", its return from rollouts
    assert table.startswith("# DPO Figs 1a, 8") and "| DPO (paper) |" in table and "| IPPO (authors) |" in table
    # a comparison is a probability of improvement with its interval, never a bare verdict, for each variant
    p = r"= [01]\.\d\d \[[01]\.\d\d, [01]\.\d\d\] \(2 vs 2 seeds\)"
    pattern = (rf"DPO vs IPPO \(final exact return\): P\(DPO \(paper\) > IPPO \(paper\)\) {p}; "
               rf"P\(DPO \(authors\) > IPPO \(authors\)\) {p}")
    assert any(re.match(pattern, n) for n in report.notes), report.notes
    assert any("Below the optimum" in n for n in report.notes)
    assert any(n.startswith(f"Game: tabular:{game} (4 states, 2 agents, 2 actions") for n in report.notes)
    for plot in report.plots:
        assert (out / plot).stat().st_size > 1000, plot
    for path in ("DPO", "IPPO", "DPO-authors", "IPPO-authors"):
        assert (out / path / "summary.json").exists()


@pytest.mark.parametrize("name, options, match", [
    ("dpo-stochastic-game", {"sclae": "cpu"}, "unknown option 'sclae'.*Did you mean 'scale'"),
    ("dpo-mpe", {"scale": "gpu"}, "scale must be 'cpu' or 'paper'"),
    ("dpo-smax", {"scale": "huge"}, "scale must be 'cpu' or 'paper'"),
    ("dpo-stochastic-game", {"algos": "dpo,qmix"}, "unknown algorithm 'qmix'.*Valid: dpo, ippo"),
    ("dpo-ablation", {"tasks": "mpe:spread,mpe:tag"}, "unknown MPE task"),
    ("dpo-smax", {"maps": "MMM"}, "unknown map.*MMM2"),
    ("dpo-mabrax", {"tasks": "cheetah"}, "unknown MABrax task.*halfcheetah_6x1"),
    ("dpo-dtarget", {"targets": "0.1,big"}, "targets must be comma-separated numbers"),
    ("dpo-delta-omega", {"grid": "1.5:2,0.5:2"}, "must be > 1"),
    ("dpo-delta-omega", {"grid": "1.5-2"}, "δ:ω pairs"),
    ("dpo-mpe", {"seeds": "zero"}, "must be of type int"),
    ("dpo-stochastic-game", {"beta_init": "-1"}, "beta_init must be > 0"),
    ("dpo-stochastic-game", {"variant": "author"}, "variant must be one of paper, authors, both"),
    ("dpo-mpe", {"variant": "code"}, "variant must be one of paper, authors, both"),
    ("dpo-stochastic-game", {"game": "climbing"}, "game must be empty .* or tabular:PATH"),
    ("dpo-stochastic-game", {"game": "tabular:/no/such/game.npz"}, "no such game file"),
])
def test_option_errors_are_raised_before_training(tmp_path, name, options, match):
    with pytest.raises(ConfigError, match=match):
        run_experiment(name, tmp_path / "x", options)
