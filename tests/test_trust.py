"""What a user handed a file, or a bad input, can rely on: checkpoints never run code, one
writer per folder, writes never follow planted links, bad inputs refused where they enter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from cpc.checkpoint import FORMAT_VERSION, CheckpointError
from cpc.cli import main
from cpc.config import load_config, to_container
from cpc.model import build_model
from cpc.resources import sample_corpus


class Payload:
    """Unpickling this creates ``marker``: the stand-in for any code a pickle can run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_checkpoint(path: Path, recipe: str, *, marker: Path | None = None, overrides=()) -> Path:
    """A real checkpoint of ``recipe``'s model (fresh weights); with ``marker``, plus a pickled payload."""
    config = load_config(recipe, list(overrides))
    torch.manual_seed(0)
    state = {"format_version": FORMAT_VERSION, "config": to_container(config), "model": build_model(config).state_dict(), "step": 0}
    if marker is not None:
        state["extra"] = Payload(marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


TEXT_SMALL = ["model.encoder.buckets=1024"]


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    """Crafted speech, image and text checkpoints and the marker file their payload would create."""
    folder = tmp_path_factory.mktemp("crafted")
    marker = folder / "MARKER"
    return {
        "marker": marker,
        "speech": write_checkpoint(folder / "speech.pt", "speech/tiny", marker=marker),
        "image": write_checkpoint(folder / "image.pt", "image/fashion_mnist", marker=marker),
        "text": write_checkpoint(folder / "text.pt", "text/books", marker=marker, overrides=TEXT_SMALL),
    }


def _probe_text_data(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "mr.tsv").write_text("".join(f"{i % 2}\tsentence number {i} is {'good' if i % 2 else 'bad'}\n" for i in range(40)))
    return folder


def _resume(tmp, checkpoint):
    run = tmp / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(Path(checkpoint).read_bytes())
    return main(["train", "speech/tiny", "--run-dir", str(run), "--resume", "train.progress=false", "data.num_workers=0"])


def _upstream(tmp, checkpoint):
    from cpc.upstream import CPCUpstream

    CPCUpstream(str(checkpoint))


def _api(tmp, checkpoint):
    import cpc

    cpc.load(checkpoint)


def _walkthrough(tmp, checkpoint):
    from cpc.walkthrough import main as walkthrough

    return walkthrough(["--checkpoint", str(checkpoint), "--out", str(tmp / "walk")])


SAMPLE = str(sample_corpus())
ENTRY_POINTS = {  # name -> (modality of the checkpoint it takes, call(tmp, checkpoint))
    "cpc.load": ("speech", _api),
    "s3prl upstream": ("speech", _upstream),
    "cpc train --resume": ("speech", _resume),
    "cpc walkthrough": ("speech", _walkthrough),
    "cpc extract": ("speech", lambda tmp, c: main(["extract", str(c), "--data", SAMPLE, "--out", str(tmp / "feats"), "--no-progress"])),
    "cpc export": ("speech", lambda tmp, c: main(["export", str(c), "--format", "torchscript", "--out", str(tmp / "x.pt")])),
    "cpc probe phone": ("speech", lambda tmp, c: main(["probe", "phone", "--features", str(c), "--data", SAMPLE, "--no-cache"])),
    "cpc probe speaker": ("speech", lambda tmp, c: main(["probe", "speaker", "--features", str(c), "--data", SAMPLE, "--no-cache"])),
    "cpc abx": ("speech", lambda tmp, c: main(["abx", "--features", str(c), "--data", SAMPLE, "--no-cache"])),
    "cpc probe phone --architecture": (
        "speech", lambda tmp, c: main(["probe", "phone", "--features", "random", "--architecture", str(c), "--data", SAMPLE, "--no-cache"])),
    "cpc probe image": ("image", lambda tmp, c: main(["probe", "image", "--features", str(c), "--data", str(tmp / "nowhere")])),
    "cpc probe text": ("text", lambda tmp, c: main(["probe", "text", "--features", str(c), "--data", str(_probe_text_data(tmp / "text"))])),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_a_crafted_checkpoint_runs_nothing(entry, crafted, tmp_path, capsys):
    modality, call = ENTRY_POINTS[entry]
    try:
        code = call(tmp_path, crafted[modality])
    except CheckpointError as error:
        code, message = 2, str(error)
    else:
        message = capsys.readouterr().err
    assert not crafted["marker"].exists(), f"{entry} ran the checkpoint's payload"
    assert code != 0
    assert "refusing" in message and "can run code" in message and ".pt" in message
    assert len(message.strip().splitlines()) == 1, message


def test_writing_anything_but_tensors_and_plain_values_fails_before_writing(tmp_path):
    from cpc.checkpoint import save_checkpoint

    with pytest.raises(TypeError, match=r"state\['config'\]\['when'\] is a pathlib"):
        save_checkpoint(tmp_path / "last.pt", {"config": {"when": Path("x")}})
    assert not (tmp_path / "last.pt").exists()


# ----------------------------------------------------------------------------- modality at the door


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clean")
    return {
        "speech": write_checkpoint(folder / "speech.pt", "speech/tiny"),
        "image": write_checkpoint(folder / "image.pt", "image/fashion_mnist"),
        "text": write_checkpoint(folder / "text.pt", "text/books", overrides=TEXT_SMALL),
    }


WRONG = {"speech": "image", "image": "text", "text": "image"}


@pytest.mark.parametrize("entry", [name for name in ENTRY_POINTS if name not in ("cpc.load", "cpc train --resume")])
def test_a_checkpoint_of_another_modality_is_refused_at_the_door(entry, clean, tmp_path, capsys):
    modality, call = ENTRY_POINTS[entry]
    try:
        code = call(tmp_path, clean[WRONG[modality]])
    except CheckpointError as error:
        code, message = 2, str(error)
    else:
        message = capsys.readouterr().err.strip().splitlines()[-1]
    assert code != 0
    assert f"needs a {modality}" in message and str(clean[WRONG[modality]]) in message, message


# ----------------------------------------------------------------------------- one writer per folder, no stale state

FAST = ["data.window=8000", "data.num_workers=0", "train.valid_every=1000", "train.progress=false", "train.log_every=1"]


def test_a_second_training_into_a_busy_folder_is_refused_naming_the_lock_and_its_holder(tmp_path, capsys):
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "cpc.cli", "train", "speech/tiny", "--run-dir", str(run), *FAST,
                              "train.max_steps=100000", "train.checkpoint_every=2"],
                             cwd=Path(__file__).parents[1], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (run / "config.yaml").exists() and time.time() < deadline and first.poll() is None:
            time.sleep(0.1)
        assert first.poll() is None, first.communicate()[1]
        code = main(["train", "speech/tiny", "--run-dir", str(run), *FAST, "train.max_steps=2"])
        message = capsys.readouterr().err.strip().splitlines()[-1]
        assert code != 0
        assert ".train.lock" in message and f"process {first.pid}" in message, message
        while not (run / "checkpoints" / "last.pt").exists() and time.time() < deadline:
            time.sleep(0.1)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    # kill -9 released the lock: the run resumes
    assert main(["train", "speech/tiny", "--run-dir", str(run), "--resume", *FAST, "train.max_steps=100000", "train.checkpoint_every=2",
                 f"train.max_steps={_step(run) + 1}"]) == 0


def _step(run: Path) -> int:
    from cpc.checkpoint import load_checkpoint

    return load_checkpoint(run / "checkpoints" / "last.pt")["step"]


def test_a_folder_with_a_run_that_saved_no_checkpoint_is_refused_not_appended_to(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 990, "loss": 1.0}\n')
    (run / "config.yaml").write_text("train: {}\n")
    code = main(["train", "speech/tiny", "--run-dir", str(run), *FAST, "train.max_steps=2"])
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert code != 0
    assert "metrics.jsonl" in message and "no checkpoints/last.pt" in message and f"rm -r {run}" in message, message
    assert (run / "metrics.jsonl").read_text() == '{"step": 990, "loss": 1.0}\n'


# ----------------------------------------------------------------------------- writes that cannot be redirected


def _victim(tmp_path: Path, name: str) -> Path:
    victim = tmp_path / f"victim-{name}"
    victim.write_text("precious\n")
    return victim


def test_training_never_writes_through_links_planted_in_its_run_dir(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "speech/tiny", "--run-dir", str(run), *FAST, "train.max_steps=2"]) == 0
    victims = {name: _victim(tmp_path, name) for name in ("metrics.jsonl", "config.yaml")}
    (run / "config.yaml").unlink()
    (run / "config.yaml").symlink_to(victims["config.yaml"])
    assert main(["train", "speech/tiny", "--run-dir", str(run), "--resume", *FAST, "train.max_steps=3"]) == 0
    assert not (run / "config.yaml").is_symlink()  # replaced, not written through
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(victims["metrics.jsonl"])
    assert main(["train", "speech/tiny", "--run-dir", str(run), "--resume", *FAST, "train.max_steps=4"]) != 0
    assert "metrics.jsonl is a symbolic link" in capsys.readouterr().err
    for name, victim in victims.items():
        assert victim.read_text() == "precious\n", name


@pytest.mark.parametrize("name,format", [(".extract.lock", "npy"), ("index.tsv", "npy"), ("extract.json", "npy"),
                                         ("feats.ark", "kaldi"), ("feats.scp", "kaldi")])
def test_extraction_never_writes_through_a_planted_link(name, format, clean, tmp_path, capsys):
    out = tmp_path / "feats"
    out.mkdir()
    victim = _victim(tmp_path, name)
    (out / name).symlink_to(victim)
    main(["extract", str(clean["speech"]), "--data", SAMPLE, "--out", str(out), "--format", format, "--no-progress"])
    assert victim.read_text() == "precious\n"


def test_export_refuses_to_overwrite_its_checkpoint(clean, tmp_path, capsys):
    checkpoint = tmp_path / "last.pt"
    checkpoint.write_bytes(clean["speech"].read_bytes())
    before = checkpoint.read_bytes()
    code = main(["export", str(checkpoint), "--format", "torchscript", "--out", str(checkpoint)])
    assert code != 0 and "is the input" in capsys.readouterr().err
    assert checkpoint.read_bytes() == before


def test_a_probe_json_that_names_its_checkpoint_is_refused(clean, tmp_path, capsys):
    checkpoint = tmp_path / "last.pt"
    checkpoint.write_bytes(clean["speech"].read_bytes())
    before = checkpoint.read_bytes()
    code = main(["probe", "phone", "--features", str(checkpoint), "--data", SAMPLE, "--no-cache", "--json", str(checkpoint)])
    assert code != 0 and "is the input" in capsys.readouterr().err
    assert checkpoint.read_bytes() == before
