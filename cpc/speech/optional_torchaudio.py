"""The optional torchaudio import, in one place.

torchaudio is optional: without it, resampling uses librosa's soxr resampler
(:func:`cpc.speech.audio.resample`) and filter banks ``torch.stft`` + librosa mel filters
(:mod:`cpc.speech.features`). Its import fails in more ways than ``ImportError``, for instance

* a CPU torch wheel next to a CUDA torchaudio wheel: ``OSError`` (missing ``libc10_cuda.so``);
* torchaudio 2.11 next to torch 2.15: ``RuntimeError: Detected that PyTorch and TorchAudio
  were compiled with different CUDA versions``;

so *any* exception means "unavailable". The import is tried once per process, on the first
call of :func:`load` (not at ``import cpc``), so a broken install costs nothing to code that
never resamples or computes a filter bank; the reason is logged once, at WARNING for a broken
install and at INFO when torchaudio is simply not installed.
"""

from __future__ import annotations

import functools
import logging
import threading
from types import ModuleType

__all__ = ["load", "require", "available", "unavailable_reason", "FALLBACK"]

log = logging.getLogger(__name__)

FALLBACK = "resampling uses librosa/soxr, filter banks torch.stft + librosa"

_lock = threading.Lock()  # two threads' first calls must not both try (and log) the import


@functools.cache
def _import() -> tuple[ModuleType | None, str | None]:
    """-> (torchaudio with .functional and .transforms imported, None) or (None, "Type: first line of message")."""
    try:
        import torchaudio
        import torchaudio.functional  # noqa: F401  (loaded here so users need no import of their own)
        import torchaudio.transforms  # noqa: F401
    except Exception as error:  # see the module docstring: RuntimeError and OSError happen too
        message = str(error).strip()
        reason = f"{type(error).__name__}: {message.splitlines()[0]}" if message else type(error).__name__
        not_installed = isinstance(error, ModuleNotFoundError) and error.name == "torchaudio"
        log.log(logging.INFO if not_installed else logging.WARNING, "torchaudio unavailable (%s): %s", reason, FALLBACK)
        return None, reason
    return torchaudio, None


def load() -> ModuleType | None:
    """The imported ``torchaudio`` (``.functional`` and ``.transforms`` ready), or None when it does not import."""
    with _lock:
        return _import()[0]


def require() -> ModuleType:
    """The imported ``torchaudio`` for an explicit ``backend="torchaudio"``; ``RuntimeError`` saying why when it does not import."""
    torchaudio = load()
    if torchaudio is None:
        raise RuntimeError(
            f"backend='torchaudio' asked for, but torchaudio does not import here ({unavailable_reason()})"
        )
    return torchaudio


def available() -> bool:
    """Whether torchaudio imports here (tried on the first call of :func:`load` or this)."""
    return load() is not None


def unavailable_reason() -> str | None:
    """Why torchaudio does not import ("RuntimeError: ..."), or None when it does."""
    with _lock:
        return _import()[1]
