"""The documentation site (mkdocs.yml, docs/): it builds with `mkdocs build --strict`, every algorithm has its
page with a key table equal to `coopmarl list algos NAME`, and the tutorial notebook runs.

The key tables on docs/algorithms/*.md are generated, between `<!-- keys: NAME -->` and `<!-- /keys -->`, from
the same source as `coopmarl list algos NAME` (`coopmarl.config.describe_config`). After changing a config's
keys, defaults or their comments, rewrite them with

    .venv/bin/python tests/test_docs_site.py --write

mkdocs and mkdocstrings are the optional `docs` extra (also in the `test` extra): without them the build test
is skipped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
ALGO_PAGES = sorted((DOCS / "algorithms").glob("*.md"))
NOTEBOOK = DOCS / "tutorial.ipynb"
KEYS_BLOCK = re.compile(r"<!-- keys: (?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /keys -->", re.S)


# ---- the key tables ----------------------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Markdown for a table cell: code spans as they are (a pipe inside backticks is no cell separator), the rest
    with markdown's special characters escaped."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(part)
        else:
            part = part.replace("\\", "\\\\")
            for ch in "|*_[]":
                part = part.replace(ch, "\\" + ch)
            out.append(part.replace("<", "&lt;").replace(">", "&gt;"))
    return "".join(out)


def _code(text: str) -> str:
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def key_table(name: str) -> str:
    """The markdown of `coopmarl list algos NAME`: one row per key (type, default, source), then the config class,
    the choices fixed by the algorithm and its variants."""
    from coopmarl.algos.base import get_algo
    from coopmarl.algos.fields import fixed_choices
    from coopmarl.config import describe_config

    algo = get_algo(name)
    cls = algo.config_cls
    lines = ["| key | type | default | source of the default |", "|---|---|---|---|"]
    for k in describe_config(cls):
        lines.append(f"| {_code(k.name)} | {_code(k.type)} | {_code(repr(k.default))} | {_escape(k.source)} |")
    lines.append("")
    lines.append(f"Config class `{cls.__module__}.{cls.__qualname__}`; paper: {_escape(algo.paper or '-')}.")
    fixed = fixed_choices(cls)
    if fixed:
        lines.append("Fixed by the algorithm (not keys): " + ", ".join(_code(f"{k}={v!r}") for k, v in fixed.items())
                     + ".")
    for variant, keys in (cls.variants() if hasattr(cls, "variants") else {}).items():
        lines.append("")
        lines.append(f"`variant={variant}`: " + (", ".join(_code(f"{k}={v!r}") for k, v in keys.items())
                                                 or "the defaults above") + ".")
    return "\n".join(lines) + "\n"


def _builtin_algos() -> list[str]:
    from coopmarl.algos.base import list_algos

    return [a.name for a in list_algos() if a.config_cls.__module__.startswith("coopmarl.")]


def write_key_tables() -> list[Path]:
    """Regenerate every key block of docs/algorithms/*.md; returns the pages that changed."""
    changed = []
    for page in ALGO_PAGES:
        text = page.read_text()
        new = KEYS_BLOCK.sub(lambda m: f"<!-- keys: {m['name']} -->\n{key_table(m['name'])}<!-- /keys -->", text)
        if new != text:
            page.write_text(new)
            changed.append(page)
    return changed


def test_every_algorithm_has_one_key_table_equal_to_list_algos():
    found: dict[str, list[str]] = {}
    for page in ALGO_PAGES:
        for m in KEYS_BLOCK.finditer(page.read_text()):
            found.setdefault(m["name"], []).append(page.name)
            assert m["body"] == key_table(m["name"]), (
                f"docs/algorithms/{page.name}: the key table of {m['name']} differs from `coopmarl list algos "
                f"{m['name']}`; run `.venv/bin/python tests/test_docs_site.py --write`")
    algos = _builtin_algos()
    missing = sorted(set(algos) - set(found))
    assert not missing, f"algorithms without a key table on docs/algorithms/*.md: {missing}"
    twice = {k: v for k, v in found.items() if len(v) > 1}
    assert not twice, f"algorithms with more than one key table: {twice}"
    unknown = sorted(set(found) - set(algos))
    assert not unknown, f"key tables of unregistered algorithms: {unknown}"


def test_key_table_escapes_markdown():
    assert _escape("Q* and `a|b` | w_min") == "Q\\* and `a|b` \\| w\\_min"
    assert _code("a`b") == "`` a`b ``"


# ---- the site ----------------------------------------------------------------------------------------------


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra (mkdocs) is not installed: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings", reason="the docs extra (mkdocstrings) is not installed")
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(site)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    # the pages of the nav, the results page as it is, and the API reference rendered from the docstrings
    for page in ["index.html", "getting-started/index.html", "concepts/index.html", "results/index.html",
                 "algorithms/value-based/index.html", "guides/statistics/index.html", "api/index.html"]:
        assert (site / page).is_file(), page
    api = (site / "api" / "index.html").read_text()
    import coopmarl

    for name, module in coopmarl._LAZY.items():  # `coopmarl.algos` is loaded as `algos` (see mkdocs.yml)
        ids = {f'id="{module}.{name}"', f'id="{module.removeprefix("coopmarl.")}.{name}"'}
        assert any(i in api for i in ids), f"coopmarl.{name} is not documented on api/index"
    assert "Mann-Whitney" in (site / "guides" / "statistics" / "index.html").read_text()
    assert (site / "tutorial.ipynb").is_file()  # the notebook is served as a download


# ---- the tutorial notebook ---------------------------------------------------------------------------------


def _code_cells() -> list[str]:
    nb = json.loads(NOTEBOOK.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_notebook_is_committed_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["nbformat"] == 4
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, "clear the notebook's outputs"


def test_notebook_runs(tmp_path):
    """The code cells in order, as one script in a fresh interpreter in an empty working directory (no Jupyter)."""
    cells = _code_cells()
    assert cells
    for i, src in enumerate(cells):
        assert not re.search(r"^\s*[!%]", src, re.M), f"cell {i}: shell or magic lines need Jupyter"
    script = tmp_path / "tutorial.py"
    script.write_text("\n\n".join(f"# ---- cell {i}\n{src}" for i, src in enumerate(cells)) + "\n")
    env = dict(os.environ, MPLBACKEND="Agg", COOPMARL_COMPILATION_CACHE="0")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    run = tmp_path / "runs" / "climbing-iql"
    for name in ["config.yaml", "metrics.csv", "summary.json", "eval.json", "curves.png"]:
        assert (run / name).is_file(), name
    assert (tmp_path / "runs" / "climbing-jal" / "summary.json").is_file()
    assert (tmp_path / "episode.gif").is_file()
    agg = json.loads((tmp_path / "runs" / "aggregate" / "aggregate.json").read_text())
    assert set(agg) >= {"tabular-iql", "jal"}


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_docs_site.py --write   (regenerates the key tables of docs/algorithms/)")
    sys.path.insert(0, str(ROOT / "src"))
    for page in write_key_tables():
        print(f"rewrote {page.relative_to(ROOT)}")
