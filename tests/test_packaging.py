"""The release: `python -m build` makes an sdist and a wheel from the checkout that pass `twine check`, and the wheel
installs and runs.

The build runs without build isolation (no network: the test extra brings `build` and `setuptools>=77`) on a copy
of the files that make the package, so nothing is written into the checkout. Installing the wheel into a fresh
venv with all its dependencies from PyPI is too heavy for the test suite: it is installed with
`pip install --no-deps --target`, and run with that folder first on the path, the dependencies coming from this
venv; the test checks that `coopmarl` is then imported from the wheel's files, not from src/.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FILES = ["pyproject.toml", "README.md"]  # beside src/ and any LICENSE*: what the build reads


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict:
    pytest.importorskip("build", reason="the `build` package is not installed (it is in the test extra)")
    import setuptools

    if tuple(int(x) for x in setuptools.__version__.split(".")[:2]) < (77, 0):
        pytest.skip(f"setuptools {setuptools.__version__} < 77 (the build backend pyproject.toml asks for)")
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "checkout"
    src.mkdir()
    for name in PACKAGE_FILES + [p.name for p in ROOT.glob("LICEN[CS]E*")]:
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    out = tmp / "dist"
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
                          cwd=tmp, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return {"tmp": tmp, "wheel": wheels[0], "sdist": sdists[0], "log": log}


def test_build_has_no_deprecation_warning(dist):
    # e.g. the old `license = { text = … }` table, License classifiers beside an SPDX expression, or a
    # license-files pattern that matches nothing: setuptools warns about each, and will refuse them
    bad = [line for line in dist["log"].splitlines()
           if re.search(r"deprecat|SetuptoolsWarning|Cannot find any files", line, re.I)]
    assert not bad, "\n".join(bad)


def test_wheel_contents_and_metadata(dist):
    import coopmarl

    with zipfile.ZipFile(dist["wheel"]) as whl:
        names = whl.namelist()
        info = f"coopmarl-{coopmarl.__version__}.dist-info"
        meta = email.message_from_bytes(whl.read(f"{info}/METADATA"))
        entry_points = whl.read(f"{info}/entry_points.txt").decode()
    # every module of the package, namespace folders without __init__.py (coopmarl/algos) included
    expected = sorted(str(p.relative_to(ROOT / "src")) for p in (ROOT / "src" / "coopmarl").rglob("*.py"))
    missing = [p for p in expected if p not in names]
    assert not missing, f"modules missing from the wheel: {missing}"
    assert meta["Name"] == "coopmarl" and meta["Version"] == coopmarl.__version__
    assert meta["License-Expression"] == "Apache-2.0"  # PEP 639
    assert not [c for c in meta.get_all("Classifier") if c.startswith("License ::")]
    assert meta.get_all("Project-URL")
    assert "coopmarl = coopmarl.cli:main" in entry_points
    extras = set(meta.get_all("Provides-Extra"))
    assert {"all", "docs", "test", "cuda"} <= extras
    for lic in ROOT.glob("LICEN[CS]E*"):
        assert f"{info}/licenses/{lic.name}" in names


def test_twine_check(dist):
    pytest.importorskip("twine", reason="twine is not installed (it is in the test extra)")
    proc = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(dist["wheel"]), str(dist["sdist"])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASSED") == 2, proc.stdout


def test_installed_wheel_runs(dist):
    target = dist["tmp"] / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--quiet",
                           "--disable-pip-version-check", "--target", str(target), str(dist["wheel"])],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the installed copy first on the path; its dependencies from this venv (src/ is on it too, via the editable
    # install's .pth, but after PYTHONPATH)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(target), COOPMARL_COMPILATION_CACHE="0")
    work = dist["tmp"] / "work"  # not the checkout: its src/ must not be found through the working directory
    work.mkdir()

    where = subprocess.run([sys.executable, "-c", "import coopmarl, coopmarl.algos.base, coopmarl.cli; "
                            "print(coopmarl.__file__); print(coopmarl.algos.base.__file__); print(coopmarl.__version__)"],
                           cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    init, base, version = where.stdout.split()
    for path in (init, base):
        assert Path(path).resolve().is_relative_to(target.resolve()), f"{path} is not the wheel's copy"
        assert not Path(path).resolve().is_relative_to((ROOT / "src").resolve())
    import coopmarl

    assert version == coopmarl.__version__

    from coopmarl.algos.base import list_algos

    algos = [a.name for a in list_algos()]
    script = target / "bin" / "coopmarl"
    assert script.is_file(), "the console script was not installed"
    for cmd in ([str(script), "list", "algos"], [sys.executable, "-m", "coopmarl", "list", "algos"]):
        run = subprocess.run(cmd, cwd=work, env=dict(env, COLUMNS="200"), capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "algorithms" in run.stdout
        listed = [a for a in algos if re.search(rf"│ {re.escape(a)}\s+│", run.stdout)]
        assert listed == algos, f"{cmd[0]} list algos: missing {sorted(set(algos) - set(listed))}"
