"""Frame features on the 10 ms grid: baselines (MFCC, log-mel), CPC models, and their disk cache.

Shape legend: S samples (16 kHz), T frames (10 ms = 160 samples), D feature dimensions.

Every feature set maps one utterance (S,) to a (T, D) float32 array with T = S // 160, the
same grid as the corpus labels (frame t covers samples [160 t, 160 t + 160), labelled by the
phone at its centre). This is the protocol of the CPC paper (van den Oord et al. 2018,
section 3.1: "linear classifier ... on the 10 ms frames") and of the CPC_audio / libri-light
evaluations, where every compared representation lives on the same 100 Hz grid.

Baselines (no training)
-----------------------
* ``logmel`` / ``logmel80``: log power mel spectrogram, 40 or 80 bands, 25 ms Hann window,
  10 ms hop, HTK mel scale without area normalisation (torchaudio's defaults), ``log(max(x, 1e-10))``.
* ``mfcc``: 13 cepstra (orthonormal DCT-II of the 40-band power in dB, torchaudio's
  ``MFCC(log_mels=False)``: 10 log10, floored 80 dB below the utterance's peak) + Δ + ΔΔ
  (regression over ±2 frames, edges replicated) = 39 dimensions.
* Windows are centred (``center=True``, reflect padding), so STFT frame t is centred on sample
  160 t, half a hop before the label frame's centre; STFTs give ``1 + S // 160`` frames and the
  last one is dropped so baselines hit the label grid exactly.

Two implementations of the spectrogram: torchaudio's transforms when torchaudio imports, and
a fallback with ``torch.stft`` + ``librosa.filters.mel(htk=True, norm=None)`` + an explicit
orthonormal DCT; ``tests/test_features.py`` checks that they agree. torchaudio is imported by
:mod:`cpc.speech.optional_torchaudio` on the first spectrogram; any exception there (``OSError``,
``RuntimeError`` from mismatched wheels) selects the fallback.

CPC features
------------
``ModelFeatures`` runs ``model.extract_features(..., layer="context"|"encoder")`` on whole
utterances, batched by total length (sorted, so padding stays small); the encoder carries
valid lengths, so a padded batch gives each utterance's own features. ``random`` is a CPC
with the same architecture, freshly initialised with a fixed seed: the paper's "random
initialisation" row.

Global state
------------
Library code leaves the caller's torch settings alone: :func:`torch_threads` limits intra-op
threads only when asked (``threads=None``, the default everywhere, changes nothing), and
:func:`seeded` draws a seeded initialisation without touching the caller's global RNG.

Cache
-----
``FeatureCache`` keeps one ``.npz`` per utterance under ``<cache>/<key>/``. The folder's key
names the feature set and fingerprints everything its values depend on: for a checkpoint, its
resolved path, size and modification time plus the layer; for a random model, its
architecture and seed; always the corpus root, so two corpora with the same utterance ids
never share entries. Each entry also stores the fingerprint of the audio file it was computed
from (size and ``mtime_ns``, taken before the file is read): an entry whose audio file has
changed since is recomputed and replaced, the others are reused. Several probes (phone, CTC,
speaker, ABX) therefore extract each set once, and editing or replacing audio in place is
never served stale features (unless a rewrite keeps both the size and the modification time,
as ``cp -p`` of a same-size file would).

Labels vs features
------------------
``align_to_labels`` trims a feature/label pair to the shorter length when they differ by at
most ``tolerance`` frames (conv arithmetic at an utterance's end) and reports how many frames
it dropped; a larger difference is an error naming the utterance.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from cpc.errors import FeatureError
from cpc.runtime import seeded, torch_threads
from cpc.speech import optional_torchaudio
from cpc.speech.audio import SAMPLE_RATE, AudioFile, read_audio

__all__ = [
    "SAMPLE_RATE",
    "FRAME_SAMPLES",
    "have_torchaudio",
    "BASELINES",
    "FeatureSet",
    "BaselineFeatures",
    "ModelFeatures",
    "FeatureCache",
    "source_fingerprint",
    "log_mel_spectrogram",
    "mfcc",
    "deltas",
    "dct_matrix",
    "feature_set",
    "extract",
    "align_to_labels",
    "FeatureError",
    "torch_threads",
    "length_batches",
    "padded_features",
    "check_device",
    "seeded",
]

log = logging.getLogger(__name__)

FRAME_SAMPLES = 160  # 10 ms hop: the label grid
WINDOW_SAMPLES = 400  # 25 ms analysis window
NUM_FFT = 400
FEATURE_CODE_VERSION = 1  # bump when baseline values change, so old cache entries are not reused
CACHE_FORMAT = 2  # 2: one .npz per utterance holding its features and its audio file's fingerprint


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``; a ValueError saying why when it cannot be used here.

    Checked before any work, so that asking for a GPU on a machine without one fails at once
    with one line instead of a CUDA traceback after the corpus has been read.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {str(device)!r} is not a torch device name (cpu, cuda, cuda:1, mps)") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {resolved}: no CUDA device is available on this machine (torch {torch.__version__}); use cpu"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {resolved}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0"
            )
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {resolved}: no MPS (Apple GPU) device is available on this machine; use cpu")
    return resolved


def have_torchaudio() -> bool:
    """Whether torchaudio imports here (tried once per process, on first use; see :mod:`cpc.speech.optional_torchaudio`)."""
    return optional_torchaudio.available()


# ----------------------------------------------------------------------------- spectrograms


def _backend(backend: str) -> str:
    if backend not in ("auto", "torchaudio", "torch"):
        raise ValueError(f"unknown feature backend {backend!r}; expected 'auto', 'torchaudio' or 'torch'")
    if backend == "auto":
        return "torchaudio" if optional_torchaudio.available() else "torch"
    return backend


@functools.lru_cache(maxsize=8)
def _torchaudio_mel(num_mels: int):
    return optional_torchaudio.require().transforms.MelSpectrogram(
        sample_rate=SAMPLE_RATE,
        n_fft=NUM_FFT,
        win_length=WINDOW_SAMPLES,
        hop_length=FRAME_SAMPLES,
        n_mels=num_mels,
        power=2.0,
        center=True,
        pad_mode="reflect",
        norm=None,
        mel_scale="htk",
    )


@functools.lru_cache(maxsize=8)
def _librosa_mel_filters(num_mels: int) -> torch.Tensor:
    import librosa

    filters = librosa.filters.mel(
        sr=SAMPLE_RATE, n_fft=NUM_FFT, n_mels=num_mels, fmin=0.0, fmax=SAMPLE_RATE / 2, htk=True, norm=None
    )
    return torch.from_numpy(filters)  # (num_mels, NUM_FFT // 2 + 1)


def _mel_power(wave: torch.Tensor, num_mels: int, backend: str) -> torch.Tensor:
    """wave (S,) float -> mel power spectrogram (num_mels, 1 + S // 160)."""
    if _backend(backend) == "torchaudio":
        return _torchaudio_mel(num_mels)(wave)
    spectrum = (
        torch.stft(
            wave,
            NUM_FFT,
            hop_length=FRAME_SAMPLES,
            win_length=WINDOW_SAMPLES,
            window=torch.hann_window(WINDOW_SAMPLES),
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        .abs()
        .pow(2)
    )  # (NUM_FFT // 2 + 1, T + 1)
    return _librosa_mel_filters(num_mels).to(spectrum.dtype) @ spectrum  # (num_mels, T + 1)


def _as_tensor(wave: np.ndarray | torch.Tensor) -> torch.Tensor:
    wave = torch.as_tensor(wave, dtype=torch.float32)
    if wave.dim() != 1:
        raise ValueError(f"expected one waveform of shape (S,), got {tuple(wave.shape)}")
    if wave.numel() < WINDOW_SAMPLES:  # reflect padding needs a few samples; too short for a frame anyway
        wave = torch.nn.functional.pad(wave, (0, WINDOW_SAMPLES - wave.numel()))
    return wave


def log_mel_spectrogram(wave: np.ndarray | torch.Tensor, num_mels: int = 40, *, backend: str = "auto") -> torch.Tensor:
    """wave (S,) at 16 kHz -> log mel power (T, num_mels), T = S // 160."""
    num_frames = len(wave) // FRAME_SAMPLES
    mel = _mel_power(_as_tensor(wave), num_mels, backend)  # (num_mels, T + 1)
    return mel.clamp(min=1e-10).log()[:, :num_frames].T.contiguous()


def dct_matrix(num_coefficients: int, num_mels: int) -> torch.Tensor:
    """Orthonormal DCT-II, shape (num_mels, num_coefficients), as ``torchaudio.functional.create_dct(..., "ortho")``."""
    n = torch.arange(num_mels, dtype=torch.float64)
    k = torch.arange(num_coefficients, dtype=torch.float64)[:, None]
    dct = torch.cos(math.pi / num_mels * (n + 0.5) * k)  # (num_coefficients, num_mels)
    dct[0] *= 1.0 / math.sqrt(2.0)
    dct *= math.sqrt(2.0 / num_mels)
    return dct.T.float()


def deltas(features: torch.Tensor, window: int = 2) -> torch.Tensor:
    """Regression deltas over ±window frames with replicated edges: (T, D) -> (T, D).

    d_t = sum_n n (c_{t+n} - c_{t-n}) / (2 sum_n n^2), as HTK/Kaldi and torchaudio's compute_deltas.
    """
    if features.shape[0] == 0:
        return features.clone()
    padded = torch.cat([features[:1].expand(window, -1), features, features[-1:].expand(window, -1)])  # (T + 2w, D)
    length = features.shape[0]
    numerator = sum(
        n * (padded[window + n : window + n + length] - padded[window - n : window - n + length])
        for n in range(1, window + 1)
    )
    return numerator / (2 * sum(n * n for n in range(1, window + 1)))


def mfcc(
    wave: np.ndarray | torch.Tensor,
    num_coefficients: int = 13,
    num_mels: int = 40,
    *,
    with_deltas: bool = True,
    backend: str = "auto",
) -> torch.Tensor:
    """wave (S,) -> MFCC (T, 3 * num_coefficients) with Δ and ΔΔ (or (T, num_coefficients)), T = S // 160."""
    num_frames = len(wave) // FRAME_SAMPLES
    mel = _mel_power(_as_tensor(wave), num_mels, backend)  # (num_mels, T + 1)
    decibels = 10.0 * mel.clamp(min=1e-10).log10()
    decibels = torch.maximum(decibels, decibels.max() - 80.0)  # torchaudio AmplitudeToDB(top_db=80)
    cepstra = (decibels.T @ dct_matrix(num_coefficients, num_mels))[:num_frames]  # (T, num_coefficients)
    if not with_deltas:
        return cepstra.contiguous()
    first = deltas(cepstra)
    return torch.cat([cepstra, first, deltas(first)], dim=1)


# ----------------------------------------------------------------------------- feature sets


class FeatureSet(Protocol):
    """A name -> per-utterance (T, D) features on the 10 ms grid."""

    name: str

    def fingerprint(self) -> str:
        """Everything the values depend on (for the cache key)."""

    def compute(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """waves: list of (S_i,) float32 at 16 kHz -> list of (T_i, D) float32."""


@dataclass
class BaselineFeatures:
    """MFCC 13+Δ+ΔΔ or log-mel (40/80 bands); no training, no batching needed."""

    name: str
    function: Callable[[np.ndarray], torch.Tensor]
    description: str

    def fingerprint(self) -> str:
        return f"{self.description} v{FEATURE_CODE_VERSION}"

    def compute(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self.function(wave).numpy().astype(np.float32) for wave in waves]


BASELINES: dict[str, Callable[[], BaselineFeatures]] = {
    "mfcc": lambda: BaselineFeatures("mfcc", lambda wave: mfcc(wave), "mfcc 13+d+dd, 40 mels, 25ms/10ms"),
    "logmel": lambda: BaselineFeatures("logmel", lambda wave: log_mel_spectrogram(wave, 40), "log-mel 40, 25ms/10ms"),
    "logmel80": lambda: BaselineFeatures(
        "logmel80", lambda wave: log_mel_spectrogram(wave, 80), "log-mel 80, 25ms/10ms"
    ),
}


class ModelFeatures:
    """Features of a CPC model's ``layer`` ("context" c_t or "encoder" z_t), extracted in batches.

    ``batch_samples`` bounds the padded samples per forward pass (memory), ``device`` where it
    runs, ``threads`` the torch intra-op threads during the forward passes (None: the caller's).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        layer: str,
        *,
        name: str,
        fingerprint: str,
        batch_samples: int = SAMPLE_RATE * 80,
        device: str | torch.device = "cpu",
        threads: int | None = None,
    ) -> None:
        self.model = model.eval().to(check_device(device))
        self.layer = layer
        self.name = name
        self._fingerprint = fingerprint
        self.batch_samples = batch_samples
        self.device = torch.device(device)
        self.threads = threads
        if model.downsample_rate != FRAME_SAMPLES:
            raise FeatureError(
                f"{name}: the model's frames are {model.downsample_rate} samples, the label grid is {FRAME_SAMPLES}"
            )

    def fingerprint(self) -> str:
        return f"{self._fingerprint} layer={self.layer}"

    def compute(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        results: list[np.ndarray | None] = [None] * len(waves)
        for indices in length_batches([len(wave) for wave in waves], self.batch_samples):
            with torch_threads(self.threads):
                features = padded_features(self.model, [waves[i] for i in indices], self.layer, self.device)
            for i, values in zip(indices, features):
                results[i] = values
        return results  # type: ignore[return-value]


def length_batches(lengths: Sequence[int], batch_samples: int) -> list[list[int]]:
    """Indices of ``lengths`` sorted by length (stable), grouped while the padded batch (longest x
    count) stays within ``batch_samples``; a sequence longer than the budget gets a batch of its own.
    Sorting keeps the padding small."""
    batches: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if batches and lengths[index] * (len(batches[-1]) + 1) <= batch_samples:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def padded_features(
    model: torch.nn.Module, waves: Sequence[np.ndarray], layer: str, device: str | torch.device
) -> list[np.ndarray]:
    """One padded forward pass: waves (S_i,) float32 -> features (T_i, D) float32 each,
    T_i = model.output_lengths(S_i); the valid lengths mask the padding, whose frames are dropped."""
    lengths = torch.tensor([len(wave) for wave in waves])  # (B,)
    batch = torch.zeros(len(waves), int(lengths.max()))  # (B, S)
    for row, wave in enumerate(waves):
        batch[row, : len(wave)] = torch.from_numpy(np.asarray(wave, dtype=np.float32))
    with torch.inference_mode():
        features, frames = model.extract_features(batch.to(device), lengths.to(device), layer=layer)  # (B, T, D), (B,)
    features = features.float().cpu().numpy()
    return [np.ascontiguousarray(features[row, : int(frames[row])]) for row in range(len(waves))]


def _file_fingerprint(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()} size={stat.st_size} mtime_ns={stat.st_mtime_ns}"


def random_model(
    architecture: str | os.PathLike | None = None, *, seed: int = 0, what: str = "speech features"
) -> tuple[torch.nn.Module, str]:
    """A freshly initialised CPC (the paper's "random init" row) and its fingerprint.

    ``architecture``: a checkpoint (its model config is used, not its weights), a recipe YAML,
    or None for the paper's architecture.
    """
    from cpc.checkpoint import load_checkpoint, require_modality
    from cpc.config import load_config
    from cpc.model import build_model

    if architecture is None:
        config = load_config(None).model
    elif str(architecture).endswith((".yaml", ".yml")):
        config = load_config(architecture).model
    else:
        saved = load_checkpoint(architecture)["config"]
        require_modality(saved, "speech", what, architecture)
        config = saved["model"]
    with seeded(seed):
        model = build_model({"model": dict(config)} if isinstance(config, dict) else config)
    from omegaconf import OmegaConf

    container = OmegaConf.to_container(config, resolve=True) if not isinstance(config, dict) else config
    return model.eval(), f"random-init seed={seed} model={json.dumps(container, sort_keys=True)}"


def feature_set(
    name: str,
    *,
    layer: str = "context",
    architecture: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    threads: int | None = None,
    what: str = "speech features",
) -> FeatureSet:
    """Resolve a feature-set name: ``mfcc``, ``logmel``, ``logmel80``, ``random`` or a checkpoint path.

    ``layer``, ``device`` and ``threads`` apply to CPC models (checkpoint, random; see
    :class:`ModelFeatures`); ``architecture`` gives the random model's architecture
    (checkpoint or recipe; default the paper's); ``what`` names the caller when a checkpoint
    is not a speech model. Raises
    :class:`FeatureError` for an unknown name and ``cpc.checkpoint.CheckpointError`` for a
    checkpoint of another format version.
    """
    if name in BASELINES:
        return BASELINES[name]()
    if name == "random":
        model, fingerprint = random_model(architecture, seed=seed, what=what)
        return ModelFeatures(
            model, layer, name=f"random-{layer}", fingerprint=fingerprint, device=device, threads=threads
        )
    path = Path(name)
    if path.is_file():
        import cpc

        model = cpc.load(path, needs="speech", what=what)
        return ModelFeatures(
            model,
            layer,
            name=f"cpc-{layer}",
            fingerprint=f"checkpoint {_file_fingerprint(path)}",
            device=device,
            threads=threads,
        )
    raise FeatureError(
        f"unknown feature set {name!r}: expected {', '.join(BASELINES)}, random, or an existing checkpoint file"
    )


# ----------------------------------------------------------------------------- cache and extraction


class FeatureCache:
    """One ``.npz`` per utterance under ``<root>/<key>/``; ``root=None`` disables caching.

    An entry holds ``features`` (T, D) and ``source``, the fingerprint of the audio file it was
    computed from (:func:`source_fingerprint`); :meth:`load` returns None when that file has
    changed since, so the caller recomputes and :meth:`save` replaces the entry.
    """

    def __init__(self, root: str | os.PathLike | None) -> None:
        self.root = Path(root) if root is not None else None

    @staticmethod
    def key(features: FeatureSet, corpus_root: str | os.PathLike) -> str:
        description = f"{features.fingerprint()} corpus={Path(corpus_root).resolve()} cache-format={CACHE_FORMAT}"
        return f"{features.name}-{hashlib.sha1(description.encode()).hexdigest()[:16]}"

    def folder(self, features: FeatureSet, corpus_root: str | os.PathLike) -> Path | None:
        if self.root is None:
            return None
        folder = self.root / self.key(features, corpus_root)
        folder.mkdir(parents=True, exist_ok=True)
        info = folder / "feature_set.json"
        if not info.exists():
            info.write_text(
                json.dumps(
                    {
                        "name": features.name,
                        "fingerprint": features.fingerprint(),
                        "corpus": str(Path(corpus_root).resolve()),
                    },
                    indent=1,
                )
            )
        return folder

    @staticmethod
    def load(folder: Path, utterance: str, source: str) -> np.ndarray | None:
        """The cached (T, D) features of ``utterance`` if they were computed from ``source``, else None."""
        path = folder / f"{utterance}.npz"
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as entry:
                if str(entry["source"]) != source:
                    return None
                return entry["features"]
        except (OSError, ValueError, KeyError):  # unreadable (e.g. written by another version): recompute
            return None

    @staticmethod
    def save(folder: Path, utterance: str, source: str, values: np.ndarray) -> None:
        temporary = folder / f".{utterance}.tmp.npz"
        np.savez(temporary, features=values, source=np.array(source))
        os.replace(temporary, folder / f"{utterance}.npz")  # atomic: a killed run leaves no half entry


def source_fingerprint(path: str | os.PathLike) -> str:
    """What a cache entry was computed from: the audio file's size and modification time (ns)."""
    stat = os.stat(path)
    return f"size={stat.st_size} mtime_ns={stat.st_mtime_ns}"


def extract(
    features: FeatureSet,
    files: dict[str, AudioFile],
    utterances: Iterable[str],
    *,
    cache: FeatureCache | None = None,
    corpus_root: str | os.PathLike = ".",
    batch_utterances: int = 32,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Features of ``utterances`` (ids into ``files``) -> {utt_id: (T, D) float32}, read from or written to ``cache``.

    A cached utterance whose audio file changed (size or modification time) since it was
    cached is recomputed. Raises :class:`FeatureError` listing ids with no audio file.
    """
    from tqdm import tqdm

    utterances = list(dict.fromkeys(utterances))
    missing = [u for u in utterances if u not in files]
    if missing:
        shown = ", ".join(missing[:10]) + (f" ... ({len(missing)} in all)" if len(missing) > 10 else "")
        raise FeatureError(f"no audio file for utterance(s): {shown}")
    folder = (cache or FeatureCache(None)).folder(features, corpus_root)
    result: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    todo, stale = [], 0
    for utterance in utterances:
        if folder is None:
            todo.append(utterance)
            continue
        # Stat before reading: a file changed while it is read is cached under its old fingerprint, so recomputed next time.
        sources[utterance] = source_fingerprint(files[utterance].path)
        cached = FeatureCache.load(folder, utterance, sources[utterance])
        if cached is not None:
            result[utterance] = cached
        else:
            todo.append(utterance)
            stale += (folder / f"{utterance}.npz").exists()
    if todo:
        log.info(
            "extracting %s features for %d utterance(s) (%d cached%s)",
            features.name,
            len(todo),
            len(utterances) - len(todo),
            f"; {stale} recomputed because the audio file changed" if stale else "",
        )
    bar = tqdm(
        total=len(todo),
        desc=f"features {features.name}",
        unit="utt",
        disable=not progress or not todo,
        dynamic_ncols=True,
    )
    for start in range(0, len(todo), batch_utterances):
        chunk = todo[start : start + batch_utterances]
        waves = [read_audio(files[u].path, sample_rate=files[u].sample_rate) for u in chunk]
        for utterance, values in zip(chunk, features.compute(waves)):
            values = np.asarray(values, dtype=np.float32)
            result[utterance] = values
            if folder is not None:
                FeatureCache.save(folder, utterance, sources[utterance], values)
        bar.update(len(chunk))
    bar.close()
    return {u: result[u] for u in utterances}


def align_to_labels(
    features: np.ndarray, labels: np.ndarray, utterance: str, *, tolerance: int = 2
) -> tuple[np.ndarray, np.ndarray, int]:
    """Trim features (T, D) and labels (T',) to a common length; returns (features, labels, frames dropped).

    |T - T'| <= ``tolerance`` is normal at an utterance's end; more raises :class:`FeatureError` naming it.
    """
    difference = len(features) - len(labels)
    if abs(difference) > tolerance:
        raise FeatureError(
            f"utterance {utterance}: {len(features)} feature frames but {len(labels)} label frames "
            f"(differ by {abs(difference)} > {tolerance}); are the labels on the 10 ms grid of this audio?"
        )
    length = min(len(features), len(labels))
    return features[:length], labels[:length], abs(difference)
