"""Audio I/O: every file is read with soundfile, mixed to mono and resampled to 16 kHz.

Design notes
------------
* soundfile reads any format libsndfile knows (wav, flac, ogg/vorbis, opus, mp3); we never
  use ``torchaudio.load`` (it needs FFmpeg + torchcodec and is gone in torchaudio 2.11).
* Resampling uses ``torchaudio.functional.resample`` when torchaudio imports, else librosa's
  soxr resampler. torchaudio is imported by :mod:`cpc.speech.optional_torchaudio` on the first resampling,
  and any exception there (``OSError``, ``RuntimeError`` from mismatched wheels) means librosa.
* A corpus is described by :class:`AudioFile` rows (path, number of samples at 16 kHz,
  speaker). ``list_audio`` builds them from a LibriSpeech-layout folder, a flat folder or a
  TSV manifest; unreadable files are skipped with a warning naming the file and counted.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from cpc.errors import AudioError
from cpc.speech import optional_torchaudio

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg", ".opus", ".mp3")


@dataclass(frozen=True)
class AudioFile:
    """One utterance of a corpus.

    ``num_samples`` is the length *after* resampling to 16 kHz; ``sample_rate`` is the file's own.
    """

    path: str
    num_samples: int
    speaker: str
    sample_rate: int = SAMPLE_RATE

    @property
    def utterance_id(self) -> str:
        return Path(self.path).stem


def resample(wave: np.ndarray, orig_rate: int, target_rate: int = SAMPLE_RATE, *, backend: str = "auto") -> np.ndarray:
    """Resample a 1-D float32 signal. ``backend``: ``auto`` (torchaudio if it imports, else librosa) | ``torchaudio`` | ``librosa``."""
    if orig_rate == target_rate:
        return wave
    if backend == "auto":
        backend = "torchaudio" if optional_torchaudio.available() else "librosa"
    if backend == "torchaudio":
        import torch

        return (
            optional_torchaudio.require()
            .functional.resample(torch.from_numpy(np.ascontiguousarray(wave)), orig_rate, target_rate)
            .numpy()
        )
    if backend == "librosa":
        import librosa

        return librosa.resample(wave, orig_sr=orig_rate, target_sr=target_rate, res_type="soxr_hq").astype(np.float32)
    raise ValueError(f"unknown resampling backend {backend!r}; expected 'auto', 'torchaudio' or 'librosa'")


_warned_rates: set[int] = set()


def read_audio(
    path: str | os.PathLike, start: int = 0, stop: int | None = None, *, sample_rate: int | None = None
) -> np.ndarray:
    """Read ``[start, stop)`` (16 kHz sample indices) of a file as mono float32 at 16 kHz.

    16 kHz files are read by seeking, so a training window costs one small read, not the
    whole file. Files at another rate are read whole and resampled (logged once per rate).
    Raises :class:`AudioError` naming the file when it cannot be decoded, or when the samples
    read hold NaN or infinity (a float file can: every feature frame they reach would be NaN).
    """
    try:
        if sample_rate is None:
            sample_rate = sf.info(str(path)).samplerate
        if sample_rate == SAMPLE_RATE:
            wave, _ = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
            return _finite(wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0], path)
        wave, _ = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioError(f"cannot read audio file {path}: {error}") from error
    _finite(wave, path)  # before resampling, which would spread a NaN over the whole file
    if sample_rate not in _warned_rates:
        _warned_rates.add(sample_rate)
        log.info("resampling %d Hz audio to %d Hz (first file: %s)", sample_rate, SAMPLE_RATE, path)
    wave = resample(wave.mean(axis=1), sample_rate)
    return wave[start:stop]


def _finite(wave: np.ndarray, path) -> np.ndarray:
    bad = wave.size - int(np.isfinite(wave).sum())
    if bad:
        raise AudioError(f"audio file {path} holds {bad} non-finite sample(s) (NaN or infinity)")
    return wave


def probe(path: str | os.PathLike, speaker: str) -> AudioFile:
    """Header-only look at a file: its 16 kHz length. Raises :class:`AudioError` naming the file."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioError(f"cannot read audio file {path}: {error}") from error
    if info.frames <= 0:
        raise AudioError(f"audio file {path} holds no samples")
    num_samples = (
        info.frames if info.samplerate == SAMPLE_RATE else math.ceil(info.frames * SAMPLE_RATE / info.samplerate)
    )
    return AudioFile(str(path), num_samples, speaker, info.samplerate)


@dataclass
class Listing:
    """What :func:`list_audio` found: usable files and the ones it had to skip."""

    files: list[AudioFile] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def _speaker_of(path: Path, root: Path) -> str:
    """LibriSpeech layout: the top folder under ``root``; a flat folder: the file name before the first '-'."""
    relative = path.relative_to(root)
    return relative.parts[0] if len(relative.parts) > 1 else path.stem.split("-")[0]


def list_audio(source: str | os.PathLike) -> Listing:
    """List a corpus: a folder (LibriSpeech layout or flat) or a TSV manifest.

    A manifest has one row per file: ``path<TAB>num_samples<TAB>speaker`` (an optional header
    row starting with ``path``); relative paths are relative to the manifest's folder.
    Raises ``FileNotFoundError`` for a missing source and ``ValueError`` when it holds no audio.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"data source {source} does not exist")
    listing = Listing()
    if source.is_file() and source.suffix.lower() in AUDIO_EXTENSIONS:  # one audio file: a corpus of one utterance
        listing.files.append(probe(source, source.stem.split("-")[0]))
    elif source.is_file():
        _check_manifest_text(source)
        with open(source, newline="") as handle:
            for row_number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
                if not row or row[0].startswith("#") or (row_number == 1 and row[0] == "path"):
                    continue
                if len(row) != 3:
                    raise ValueError(f"{source}:{row_number}: expected 'path<TAB>num_samples<TAB>speaker', got {row!r}")
                path = Path(row[0]) if os.path.isabs(row[0]) else source.parent / row[0]
                try:
                    listing.files.append(probe(path, row[2]))
                except AudioError as error:
                    log.warning("skipping %s", error)
                    listing.unreadable.append(str(path))
    else:
        audio = sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        paths = [p for p in audio if p.is_file()]
        for path in audio:
            if path.is_symlink() and not path.exists():  # a dangling link is an unreadable file, not no file
                log.warning("skipping %s: a symbolic link to %s, which does not exist", path, os.readlink(path))
                listing.unreadable.append(str(path))
        for path in paths:
            try:
                listing.files.append(probe(path, _speaker_of(path, source)))
            except AudioError as error:
                log.warning("skipping %s", error)
                listing.unreadable.append(str(path))
    if not listing.files:
        raise ValueError(
            f"no readable audio in {source} (looked for {', '.join(AUDIO_EXTENSIONS)}; {len(listing.unreadable)} unreadable)"
        )
    if listing.unreadable:
        log.warning("skipped %d unreadable audio file(s) in %s", len(listing.unreadable), source)
    return listing


def _check_manifest_text(source: Path) -> None:
    """A manifest is UTF-8 text; anything else (an audio file of another extension, an archive) is named as such."""
    with open(source, "rb") as handle:
        head = handle.read(4096)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 4:  # not a multi-byte character cut at the end of the block
            raise ValueError(
                f"data source {source} is a file but not a TSV manifest (not text); give a folder of audio, "
                f"one audio file ({', '.join(AUDIO_EXTENSIONS)}) or a manifest"
            ) from None


def read_split(path: str | os.PathLike) -> list[str]:
    """A split file: one utterance id per line (the CPC LibriSpeech-100 ``train_split.txt`` format)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} does not exist")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]
