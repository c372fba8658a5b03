"""Self-describing checkpoints, written atomically.

A checkpoint is one ``torch.save`` dict:

    format_version  int     bumped on any incompatible change; loading another version fails
    config          dict    the full resolved config (model, data, optim, train)
    model           dict    state_dict, loaded strictly
    optimizer       dict    optimizer state (training checkpoints)
    step            int     optimizer steps done
    rng             dict    torch CPU/CUDA RNG states
    log_window      dict    metric sums of the log window open at ``step`` (training checkpoints)

Every value is a tensor or a plain container (dict, list, str, number, bool, None), so a
checkpoint loads with ``torch.load(weights_only=True)``: reading one never runs code. A file
that would need unpickling anything else is refused, not loaded; writing such a state fails
before anything is written.

Writes go to a temporary file in the same folder, are flushed to disk, then renamed over
the target (``os.replace`` is atomic on POSIX), so a run killed mid-write, or one that fills
the disk, leaves the previous checkpoint intact. The file gets the mode any new file gets
under the process umask (0644 under the usual 022), like the rest of a run directory.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import pickle
import re
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import torch

from cpc.safe_io import create_temporary

# 2: the encoder lost ``standardize_input`` (not causal) and conv layers gained ``bias``;
#    training checkpoints carry the open log window (``log_window``).
# Reading with weights_only=True changed no version: version 2 files already hold only tensors
# and plain values, so every checkpoint cpc wrote still loads.
FORMAT_VERSION = 2


class CheckpointError(ValueError):
    """A file that is not a loadable cpc checkpoint; the message names it."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Atomically write ``state`` (plus the format version) to ``path``.

    Raises :class:`CheckpointError` naming the file when the device is full; the temporary
    file is removed and an existing ``path`` is left as it was.
    """
    path = Path(path)
    _check_plain(state, "state")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _interrupt_after_write():
        _write_atomically(path, state)


def _write_atomically(path: Path, state: dict[str, Any]) -> None:
    temporary = None
    try:
        descriptor, temporary = create_temporary(path)  # O_EXCL: never a file or link already there
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


_PLAIN = (str, int, float, bool, type(None))


def _check_plain(value: Any, where: str) -> None:
    """Only tensors and plain containers: what ``torch.load(weights_only=True)`` reads back."""
    if isinstance(value, torch.Tensor) or type(value) in _PLAIN:
        return
    if type(value) in (dict, collections.OrderedDict, list, tuple):
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            if isinstance(value, dict) and type(key) not in _PLAIN:
                raise TypeError(
                    f"checkpoint {where} has a key of type {type(key).__name__}; only tensors and plain values are saved"
                )
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(
        f"checkpoint {where} is a {type(value).__module__}.{type(value).__qualname__}; only tensors and plain values are saved"
    )


@contextlib.contextmanager
def _interrupt_after_write():
    """Hold Ctrl-C (SIGINT) back until the checkpoint is on disk, then raise it.

    A KeyboardInterrupt inside ``torch.save`` leaves its zip writer half-closed, and closing it
    raises a RuntimeError chained to the interrupt: a traceback, and the checkpoint the user
    pressed Ctrl-C to keep is lost. Writing one takes a fraction of a second, so the interrupt
    waits for it. Only where Python's own handler is installed (the main thread, nobody
    else's handler).
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
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
    """Read a checkpoint (tensors and plain values only, never code) and check its format version."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    state = read_tensors(path, map_location)
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"{path} is not a cpc checkpoint (no format_version)")
    if state["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {state['format_version']}, this cpc reads version {FORMAT_VERSION}"
        )
    return state


def read_tensors(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers, nothing that runs code.

    A file that needs unpickling anything else (a class, a function: a pickle can run any code
    while it is read) is refused with a :class:`CheckpointError` naming the file and the object.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL\s+([\w.<>]+)", str(error))
        what = f"unpickling {found.group(1)}" if found else "unpickling something other than tensors and plain values"
        raise CheckpointError(
            f"refusing {path}: reading it needs {what}, which can run code; not loaded "
            "(cpc checkpoints hold only tensors and plain values)"
        ) from None
    except Exception as error:  # torch raises several types for truncated/corrupt files
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first}") from error


# What each modality's models read; the checkpoint's data.name says which it is (the encoder
# for a config without a data section).
MODALITIES = {
    "speech": "a speech model (raw audio)",
    "fashion_mnist": "an image model (patch grids)",
    "text": "a text model (n-gram ids)",
}
_ENCODER_MODALITY = {"conv": "speech", "patch_resnet": "fashion_mnist", "sentence_conv": "text"}


def checkpoint_modality(config: dict[str, Any]) -> str | None:
    """``speech``, ``fashion_mnist`` or ``text`` for a checkpoint's config; None when it does not say."""
    data = config.get("data") if isinstance(config, dict) else None
    if isinstance(data, dict) and data.get("name"):
        return str(data["name"])
    encoder = ((config or {}).get("model") or {}).get("encoder") or {}
    return _ENCODER_MODALITY.get(encoder.get("name", "conv"))


def require_modality(config: dict[str, Any], needs: str, what: str, source: object) -> None:
    """A :class:`CheckpointError` in one line when the config's modality (a checkpoint's, a recipe's) is not ``needs``.

    ``what`` is the command or API (``cpc probe phone``), ``source`` the file.
    """
    found = checkpoint_modality(config)
    if found is not None and found != needs:
        raise CheckpointError(
            f"{what} needs {MODALITIES.get(needs, needs)}, but {source} holds "
            f"{MODALITIES.get(found, f'a {found} model')} (data.name={found})"
        )


def load(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", *, needs: str | None = None, what: str = "this"
):
    """Rebuild the model saved in a checkpoint, weights loaded strictly, in eval mode.

    ``needs`` (``speech``, ``fashion_mnist``, ``text``): refuse, before building anything, a
    checkpoint of another modality; ``what`` names the caller in that message.
    """
    from cpc.model import build_model

    state = load_checkpoint(path, map_location)
    if needs is not None:
        require_modality(state["config"], needs, what, path)
    model = build_model(state["config"])
    model.load_state_dict(state["model"], strict=True)
    return model.eval()
