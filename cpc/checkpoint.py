"""Self-describing checkpoints, written atomically.

A checkpoint is one ``torch.save`` dict:

    format_version  int     bumped on any incompatible change; loading another version fails
    config          dict    the full resolved config (model, data, optim, train)
    model           dict    state_dict, loaded strictly
    optimizer       dict    optimizer state (training checkpoints)
    step            int     optimizer steps done
    rng             dict    torch CPU/CUDA RNG states
    log_window      dict    metric sums of the log window open at ``step`` (training checkpoints)

Writes go to a temporary file in the same folder, are flushed to disk, then renamed over
the target (``os.replace`` is atomic on POSIX), so a run killed mid-write, or one that fills
the disk, leaves the previous checkpoint intact. The file gets the mode any new file gets
under the process umask (0644 under the usual 022), like the rest of a run directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import torch

# 2: the encoder lost ``standardize_input`` (not causal) and conv layers gained ``bias``;
#    training checkpoints carry the open log window (``log_window``).
FORMAT_VERSION = 2


class CheckpointError(ValueError):
    """A file that is not a loadable cpc checkpoint; the message names it."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Atomically write ``state`` (plus the format version) to ``path``.

    Raises :class:`CheckpointError` naming the file when the device is full; the temporary
    file is removed and an existing ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _interrupt_after_write():
        _write_atomically(path, state)


def _write_atomically(path: Path, state: dict[str, Any]) -> None:
    temporary = None
    try:
        descriptor, temporary = _create_temporary(path)
        with os.fdopen(descriptor, "wb") as handle:
            torch.save({"format_version": FORMAT_VERSION, **state}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        full = isinstance(error, (OSError, RuntimeError)) and _device_full(error, path.parent, state)
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        if full:
            free = shutil.disk_usage(path.parent).free
            raise CheckpointError(
                f"cannot write checkpoint {path}: no space left on device "
                f"({free / 2**20:.1f} MiB free, the checkpoint needs about {_tensor_bytes(state) / 2**20:.1f} MiB)"
            ) from error
        raise


@contextlib.contextmanager
def _interrupt_after_write():
    """Hold Ctrl-C (SIGINT) back until the checkpoint is on disk, then raise it.

    A KeyboardInterrupt inside ``torch.save`` leaves its zip writer half-closed, and closing it
    raises a RuntimeError chained to the interrupt: a traceback, and the checkpoint the user
    pressed Ctrl-C to keep is lost. Writing one takes a fraction of a second, so the interrupt
    waits for it. Only where Python's own handler is installed (the main thread, nobody
    else's handler).
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    received = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if received:
        raise KeyboardInterrupt


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new file next to ``path``, created with mode 0666 so that the umask applies (``mkstemp`` gives 0600)."""
    for _ in range(100):
        temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(temporary)
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file next to {path}")


def _device_full(error: BaseException, folder: Path, state: dict[str, Any]) -> bool:
    """Whether a failed write ran out of space.

    ``torch.save`` reports a failed write as ``RuntimeError: ... unexpected pos ...``; the
    ``OSError`` (ENOSPC) behind it is in the exception chain when it wrote to a Python file.
    Failing that, the free space left (temporary file still there) decides.
    """
    chain = [error]
    while chain[-1] is not None and len(chain) < 20:
        if isinstance(chain[-1], OSError) and chain[-1].errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    if not isinstance(error, RuntimeError):
        return False
    try:
        return shutil.disk_usage(folder).free < _tensor_bytes(state)
    except OSError:
        return False


def _tensor_bytes(state: Any) -> int:
    """Bytes of the tensors in a nested dict/list state: about the size of its checkpoint."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(_tensor_bytes(value) for value in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_tensor_bytes(value) for value in state)
    return 0


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint and check its format version."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        # weights_only=False: the RNG states are plain tensors but the config is a nested dict
        # we wrote ourselves; checkpoints are trusted files like any pickle.
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # torch raises several types for truncated/corrupt files
        raise CheckpointError(f"cannot read checkpoint {path}: {error}") from error
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"{path} is not a cpc checkpoint (no format_version)")
    if state["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {state['format_version']}, this cpc reads version {FORMAT_VERSION}"
        )
    return state


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Rebuild the model saved in a checkpoint, weights loaded strictly, in eval mode."""
    from cpc.model import build_model

    state = load_checkpoint(path, map_location)
    model = build_model(state["config"])
    model.load_state_dict(state["model"], strict=True)
    return model.eval()
