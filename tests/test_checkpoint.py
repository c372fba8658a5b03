"""Checkpoint writes: a full disk is named and keeps the previous checkpoint; files get the umask's mode.

The full-disk tests write to a real, small tmpfs (``mount -t tmpfs``); they skip, saying why,
where mounting is not permitted (not root, no CAP_SYS_ADMIN).
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_corpus

from cpc import checkpoint
from cpc.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs mounted on a fresh folder, unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no `mount` program to make a small tmpfs")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a 2 MiB tmpfs to fill (needs root or CAP_SYS_ADMIN): {result.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def _no_temporary_files(folder: Path) -> bool:
    return not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_full_disk_names_the_file_and_keeps_the_previous_checkpoint(small_disk):
    path = small_disk / "last.pt"
    save_checkpoint(path, {"step": 1, "model": {"w": torch.ones(3)}})
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*last.pt: no space left on device") as caught:
        save_checkpoint(path, {"step": 2, "model": {"w": torch.randn(1_000_000)}})  # 4 MB on a 2 MiB disk
    assert "\n" not in str(caught.value) and "needs about 3.8 MiB" in str(caught.value)
    assert _no_temporary_files(small_disk)
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))


def test_full_disk_is_recognised_without_the_os_error(small_disk, monkeypatch):
    """torch.save writing to a path (not a Python file) reports only ``RuntimeError: ... unexpected pos``."""

    def fills_the_disk(obj, handle):
        try:
            handle.write(b"\0" * 3 * 2**20)
            handle.flush()
        except OSError:
            pass
        # raised outside the except block: no OSError in its chain
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", fills_the_disk)
    with pytest.raises(CheckpointError, match="step_2.pt: no space left on device") as caught:
        save_checkpoint(small_disk / "step_2.pt", {"model": {"w": torch.randn(1_000_000)}})
    assert caught.value.__cause__.__context__ is None
    assert list(small_disk.iterdir()) == []


def test_other_write_errors_are_not_called_a_full_disk(tmp_path, monkeypatch):
    def breaks(obj, handle):
        raise RuntimeError("some other failure")

    monkeypatch.setattr(torch, "save", breaks)
    with pytest.raises(RuntimeError, match="some other failure"):
        save_checkpoint(tmp_path / "last.pt", {"step": 1})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cli_training_onto_a_full_disk_stops_on_one_line(small_disk):
    corpus = small_disk.parent / "corpus"
    write_corpus(corpus, speakers=2, utterances=2, seconds=1.0)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cpc.cli",
            "train",
            "recipes/speech/tiny.yaml",
            "--run-dir",
            str(small_disk / "run"),
            f"data.root={corpus}",
            "data.window=4096",
            "data.valid_fraction=0",
            "train.batch_size=2",
            "train.max_steps=1",
            "data.num_workers=0",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "last.pt: no space left on device" in errors[0], result.stderr
    assert _no_temporary_files(small_disk / "run" / "checkpoints")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)], ids=["022", "027", "002"])
def test_checkpoints_get_the_mode_of_a_new_file_under_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "last.pt", {"step": 1})
        save_checkpoint(tmp_path / "last.pt", {"step": 2})  # replacing keeps it too
        (tmp_path / "plain").write_text("")
    finally:
        os.umask(previous)
    assert (tmp_path / "last.pt").stat().st_mode & 0o777 == mode
    assert (tmp_path / "plain").stat().st_mode & 0o777 == mode
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2


class _PressesCtrlC:
    """Pickled halfway through ``torch.save``: sends this process SIGINT, as Ctrl-C in a terminal does."""

    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGINT)
        return (collections.OrderedDict, ([("seven", 7)],))  # one of the few globals a weights-only load accepts


@pytest.fixture
def python_sigint_handler():
    """Python's own Ctrl-C handler, as in a terminal: a shell without job control (nohup, CI)
    starts background jobs with SIGINT ignored, and pytest inherits that."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_a_write_lands_after_the_checkpoint_is_on_disk(tmp_path, python_sigint_handler, monkeypatch):
    path = tmp_path / "last.pt"
    monkeypatch.setattr(checkpoint, "_check_plain", lambda state, where: None)  # the marker is not a plain value
    save_checkpoint(path, {"step": 1, "weights": torch.zeros(3)})
    state = {"step": 2, "weights": torch.arange(100_000.0), "marker": _PressesCtrlC(), "after": torch.ones(5)}
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, state)
    saved = load_checkpoint(path)  # the new checkpoint, whole: written before the interrupt was raised
    assert (
        saved["step"] == 2
        and saved["marker"] == {"seven": 7}
        and torch.equal(saved["weights"], torch.arange(100_000.0))
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file left
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works as before afterwards
