"""Shared test fixtures: small generated corpora and configs."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from cpc.config import load_config

SAMPLE_RATE = 16000
PAPER_STACK = [(10, 5, 3), (8, 4, 2), (4, 2, 1), (4, 2, 1), (4, 2, 1)]  # (kernel, stride, padding)


def synthetic_utterance(rng: np.random.Generator, seconds: float, base_pitch: float) -> np.ndarray:
    """Speech-like audio: a sequence of 50-200 ms "phones", each a harmonic tone with two formant-ish partials plus noise."""
    pieces = []
    total = int(seconds * SAMPLE_RATE)
    while sum(len(p) for p in pieces) < total:
        length = int(rng.uniform(0.05, 0.2) * SAMPLE_RATE)
        t = np.arange(length) / SAMPLE_RATE
        pitch = base_pitch * rng.uniform(0.9, 1.1)
        f1, f2 = rng.uniform(300, 900), rng.uniform(900, 2500)
        tone = np.sin(2 * np.pi * pitch * t) + 0.5 * np.sin(2 * np.pi * f1 * t) + 0.3 * np.sin(2 * np.pi * f2 * t)
        pieces.append(0.2 * tone * np.hanning(length) + 0.01 * rng.standard_normal(length))
    return np.concatenate(pieces)[:total].astype(np.float32)


def write_corpus(root, speakers: int = 3, utterances: int = 4, seconds: float = 2.0, seed: int = 0) -> list:
    """A LibriSpeech-layout folder of generated FLAC files: root/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac."""
    rng = np.random.default_rng(seed)
    paths = []
    for speaker in range(speakers):
        folder = root / str(100 + speaker) / "1"
        folder.mkdir(parents=True, exist_ok=True)
        for utterance in range(utterances):
            path = folder / f"{100 + speaker}-1-{utterance:04d}.flac"
            sf.write(path, synthetic_utterance(rng, seconds * rng.uniform(0.8, 1.2), 100 + 40 * speaker), SAMPLE_RATE)
            paths.append(path)
    return paths


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root)
    return root


TEXT_SLICE_DOCUMENTS = 40  # documents per book source, 400 probe examples: the text tests' data


@pytest.fixture(scope="session")
def text_data_dir(tmp_path_factory):
    """A slice of `cpc data text` (the project's own builder); skipped when a source is missing."""
    from cpc.text.corpus import MissingSourceError, build_text_data

    root = tmp_path_factory.mktemp("text")
    try:
        build_text_data(root, max_documents=TEXT_SLICE_DOCUMENTS)
    except MissingSourceError as error:
        pytest.skip(f"text data: {error}")
    return root


def small_config(root, **overrides) -> object:
    """A config small enough to train a few steps in well under a second each."""
    settings = {
        "data.root": str(root),
        "data.window": 4096,
        "data.num_workers": 0,
        "data.valid_fraction": 0.2,
        "model.encoder.layers": "["
        + ",".join(f"{{channels: 32, kernel_size: {k}, stride: {s}, padding: {p}}}" for k, s, p in PAPER_STACK)
        + "]",
        "model.context.hidden_size": 24,
        "model.predictor.prediction_steps": 4,
        "model.loss.num_negatives": 8,
        "train.batch_size": 4,
        "train.max_steps": 6,
        "train.log_every": 2,
        "train.valid_every": 3,
        "train.valid_batches": 2,
        "train.checkpoint_every": 3,
        "train.progress": False,
        "train.threads": 1,
    }
    settings.update({key: str(value) for key, value in overrides.items()})
    return load_config(None, [f"{key}={value}" for key, value in settings.items()])


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.set_num_threads(1)
    yield
