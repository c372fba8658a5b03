"""Packaging: a wheel of the checkout holds every module, the recipes and the sample corpus, and
an installed (not editable) cpc trains a recipe by name, benchmarks and runs the demo from a
directory outside the checkout; the demo says loudly when it falls back to the sample corpus.

The wheel is built from a copy of the checkout's files (tracked, plus untracked ones git does not
ignore), so no build/ folder lands in the tree and no stale build/lib can hide a missing file.
Its commands run as ``cpc.cli.main`` (what the ``cpc`` script calls) under ``PYTHONPATH=SITE``;
they print where each imported ``cpc`` module came from, and a module loaded from anywhere but
SITE (the checkout, through the editable install of this venv) fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_demo import SMALL as TINY_MODEL  # a tiny model: the commands are tested, not the numbers

import cpc.resources as resources

REPO = Path(__file__).resolve().parents[1]
# Runs cpc.cli.main(argv) and reports, on stderr, where cpc came from.
RUN_CPC = """
import sys
site = sys.argv.pop(1)
import cpc, cpc.cli
code = cpc.cli.main(sys.argv[1:])
outside = sorted(name for name, module in list(sys.modules.items())
                 if name.split(".")[0] == "cpc" and getattr(module, "__file__", None) and not module.__file__.startswith(site))
print("cpc imported from", cpc.__file__, file=sys.stderr)
print("cpc modules from outside the install:", outside, file=sys.stderr)
sys.exit(code)
"""


def _checkout_files() -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True
    )
    if listing.returncode != 0:
        pytest.skip(f"not a git checkout: {listing.stderr.decode().strip()}")
    return sorted({name for name in listing.stdout.decode().split("\0") if name and (REPO / name).is_file()})


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel of the checkout, built offline with the venv's setuptools."""
    source = tmp_path_factory.mktemp("source")
    for name in _checkout_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-q",
        "-w",
        str(out),
        str(source),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = out.glob("cpc-*.whl")
    return path


@pytest.fixture(scope="module")
def site(wheel, tmp_path_factory) -> Path:
    """The wheel installed (not editable) into a folder of its own."""
    target = tmp_path_factory.mktemp("site")
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-index",
        "-q",
        "--target",
        str(target),
        str(wheel),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return target


def _run_installed(site: Path, cwd: Path, argv: list[str], *, path: str | None = None) -> subprocess.CompletedProcess:
    """``cpc ARGV`` from the installed wheel, in ``cwd`` (outside the checkout)."""
    assert REPO not in cwd.resolve().parents
    env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "XDG_CACHE_HOME": str(cwd / "cache"),
        "MPLCONFIGDIR": str(cwd / "matplotlib"),
    }
    if path is not None:
        env["PATH"] = path
    command = [sys.executable, "-c", RUN_CPC, str(site), *argv]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert f"cpc imported from {site / 'cpc' / '__init__.py'}" in result.stderr
    assert "cpc modules from outside the install: []" in result.stderr, result.stderr[-2000:]
    return result


def test_wheel_holds_every_module_the_recipes_and_the_sample_corpus(wheel):
    files = _checkout_files()
    with zipfile.ZipFile(wheel) as archive:
        shipped = {info.filename: info.file_size for info in archive.infolist()}
    modules = [name for name in files if name.startswith("cpc/") and name.endswith(".py")]
    assert "cpc/resources.py" in modules and not [name for name in modules if name not in shipped]
    recipes = [name for name in files if name.startswith("recipes/") and name.endswith(".yaml")]
    assert "recipes/speech/tiny.yaml" in recipes and "recipes/speech/paper.yaml" in recipes
    assert not [name for name in recipes if "cpc/" + name not in shipped]
    sample = [name for name in files if name.startswith("data/sample/")]
    assert len([name for name in sample if name.endswith(".flac")]) > 50
    assert {
        f"cpc/sample/{name[len('data/sample/') :]}": (REPO / name).stat().st_size for name in sample
    }.items() <= shipped.items()
    assert not [name for name in shipped if name.startswith(("recipes/", "data/", "tests/"))]


@pytest.mark.slow
def test_installed_cpc_finds_its_recipes_and_sample(site, tmp_path):
    code = (
        "import json, cpc.resources as r; "
        "print(json.dumps([r.list_recipes(), str(r.recipe_path('speech/tiny')), str(r.sample_corpus()), r.resolve_data_root('data/sample')]))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    names, tiny, sample, root = json.loads(result.stdout)
    assert names == ["image/fashion_mnist", "speech/paper", "speech/tiny", "text/books"]
    assert tiny == str(site / "cpc" / "recipes" / "speech" / "tiny.yaml")
    assert sample == root == str(site / "cpc" / "sample")


@pytest.mark.slow
def test_installed_train_by_recipe_name(site, tmp_path):
    run_dir = tmp_path / "run"
    _run_installed(
        site,
        tmp_path,
        [
            "train",
            "speech/tiny",
            "--run-dir",
            str(run_dir),
            "train.max_steps=2",
            "data.window=8000",
            "train.valid_every=1000",
            "data.num_workers=0",
            "train.progress=false",
        ],
    )
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert (
        f"root: {site / 'cpc' / 'sample'}" in (run_dir / "config.yaml").read_text()
    )  # the recipe's data/sample, shipped
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert steps and max(steps) == 2


@pytest.mark.slow
def test_installed_bench_train(site, tmp_path):
    out = tmp_path / "bench.json"
    _run_installed(
        site,
        tmp_path,
        [
            "bench",
            "train",
            "--recipe",
            "speech/tiny",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--skip-copied",
            "train.batch_size=2",
            "data.window=4096",
            "--json",
            str(out),
        ],
    )
    assert json.loads(out.read_text())["recipes"]["speech/tiny"]["median_step_s"] > 0


@pytest.mark.slow
def test_installed_demo_falls_back_loudly_to_the_shipped_sample(site, tmp_path):
    """Without festival and bible on PATH, the demo uses the sample shipped in the wheel and says so at the top of the report."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    run_dir = tmp_path / "demo"
    argv = ["demo", "--run-dir", str(run_dir), "--steps", "2", "--recipe", "speech/paper", *TINY_MODEL]
    result = _run_installed(site, tmp_path, argv, path=str(bin_dir))
    warnings = [
        line
        for line in result.stderr.splitlines()
        if " WARNING " in line and "SAMPLE CORPUS, NUMBERS NOT MEANINGFUL" in line
    ]
    assert warnings and "festival" in warnings[0] and "apt-get install" in warnings[0], result.stderr[-3000:]
    first_line = (run_dir / "report.md").read_text().splitlines()[0]
    assert first_line.startswith(
        "> **sample corpus: numbers not meaningful** — the 6-minute committed sample was used because "
    )
    assert "festival" in first_line and "apt-get install festival" in first_line and "1-hour corpus" in first_line
    summary = json.loads((run_dir / "report.json").read_text())["summary"]
    assert summary["warnings"] == [first_line[2:]]
    assert summary["corpus"] == str(site / "cpc" / "sample") and summary["training_steps"] == 2


def test_source_checkout_finds_the_repository_folders(tmp_path, monkeypatch):
    """In this environment cpc is the checkout (editable install or PYTHONPATH): recipes/ and data/sample/ at the top."""
    if Path(resources.__file__).resolve().parents[1] != REPO:
        pytest.skip("cpc is not imported from this checkout")
    assert resources.list_recipes() == ["image/fashion_mnist", "speech/paper", "speech/tiny", "text/books"]
    assert resources.recipe_path("speech/tiny") == REPO / "recipes" / "speech" / "tiny.yaml"
    assert resources.recipe_path("speech/paper.yaml") == REPO / "recipes" / "speech" / "paper.yaml"
    assert (
        resources.sample_corpus() == REPO / "data" / "sample"
        and (resources.sample_corpus() / "alignments.txt").is_file()
    )
    with pytest.raises(resources.RecipeNotFound, match="speech/tiny"):
        resources.recipe_path("speech/tinny")
    # data.root: the recipes' default resolves to the shipped sample only where cwd has no data/sample.
    monkeypatch.chdir(tmp_path)
    assert resources.resolve_data_root("data/sample") == str(REPO / "data" / "sample")
    assert resources.resolve_data_root("corpora/synth-1h") == "corpora/synth-1h"
    (tmp_path / "data" / "sample").mkdir(parents=True)
    assert resources.resolve_data_root("data/sample") == "data/sample"
