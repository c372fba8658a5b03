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
the target (``os.replace`` is atomic on POSIX), so a run killed mid-write leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

# 2: the encoder lost ``standardize_input`` (not causal) and conv layers gained ``bias``;
#    training checkpoints carry the open log window (``log_window``).
FORMAT_VERSION = 2


class CheckpointError(ValueError):
    """A file that is not a loadable cpc checkpoint; the message names it."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Atomically write ``state`` (plus the format version) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            torch.save({"format_version": FORMAT_VERSION, **state}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
