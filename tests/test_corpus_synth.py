"""The corpus builder: formats, determinism, label/audio alignment, missing tools, the CLI.

Needs the engines (``apt-get install festival festvox-kallpc16k festvox-kdlpc16k
festvox-us-slt-hts espeak-ng bible-kjv``); the tests skip, naming that line, only when they are
genuinely absent. Corpora are tiny (a few minutes of audio) so the file runs in well under a minute.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from cpc.corpus import synth
from cpc.corpus.formats import load_corpus
from cpc.data.audio import read_audio

from test_corpus_formats import check_built_corpus

try:
    synth.check_tools()
    MISSING = None
except synth.MissingToolError as error:
    MISSING = str(error)

needs_engines = pytest.mark.skipif(MISSING is not None, reason=f"{MISSING}")

SHIFT_FRAMES = 10  # 100 ms


def _checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "built"
    synth.build_corpus(out, hours=0.1, seed=3, workers=2)
    return out


def logmel_probe_accuracy(corpus, *, shift_frames: int = 0, max_train_frames: int = 6000, seed: int = 0) -> tuple[float, float]:
    """Linear (logistic regression) frame phone accuracy of log-mel 40 ± 4 frames on the test split.

    Labels are moved ``shift_frames`` later (frame k gets the label of frame k + shift); returns
    (accuracy, majority-class accuracy) on the test frames.
    """
    import librosa
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    mel = librosa.filters.mel(sr=16000, n_fft=400, n_mels=40)

    def features(utterance):
        wave = read_audio(corpus.files[utterance].path)
        power = np.abs(librosa.stft(wave, n_fft=400, hop_length=160, win_length=400, center=True)) ** 2
        logmel = np.log(mel @ power + 1e-6).T  # (T+1, 40); frame k centred at k × 10 ms
        labels = corpus.labels[utterance]
        logmel = logmel[: len(labels)]
        padded = np.pad(logmel, ((4, 4), (0, 0)), mode="edge")
        stacked = np.concatenate([padded[offset : offset + len(labels)] for offset in range(9)], axis=1)  # (T, 360)
        if shift_frames:
            stacked, labels = stacked[: len(labels) - shift_frames], labels[shift_frames:]
        return stacked, labels

    def split(name):
        pairs = [features(u) for u in corpus.splits[name]]
        return np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs])

    train_x, train_y = split("train")
    test_x, test_y = split("test")
    keep = np.random.default_rng(seed).permutation(len(train_y))[:max_train_frames]
    scaler = StandardScaler().fit(train_x[keep])
    with warnings.catch_warnings():  # 50 iterations is enough to separate aligned from shifted labels
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe = LogisticRegression(max_iter=50, C=0.1).fit(scaler.transform(train_x[keep]), train_y[keep])
    accuracy = float((probe.predict(scaler.transform(test_x)) == test_y).mean())
    majority = float((test_y == np.bincount(train_y).argmax()).mean())
    return accuracy, majority


@needs_engines
def test_built_corpus_has_every_file_in_its_format(built):
    check_built_corpus(built)
    summary = json.loads((built / "summary.json").read_text())
    assert summary["num_speakers"] == 6 and summary["num_held_out_speakers"] >= 1
    assert 0.07 < summary["hours"] < 0.14
    assert sum(summary["frames_per_phone"].values()) == sum(len(v) for v in load_corpus(built).labels.values())


@needs_engines
def test_same_arguments_give_byte_identical_files(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    synth.build_corpus(first, hours=0.03, seed=1, workers=2)
    synth.build_corpus(second, hours=0.03, seed=1, workers=1)  # worker count must not matter either
    assert _checksums(first) == _checksums(second)
    assert any(name.endswith(".flac") for name in _checksums(first))


@needs_engines
def test_labels_line_up_with_the_audio(built):
    corpus = load_corpus(built)
    accuracy, majority = logmel_probe_accuracy(corpus)
    shifted, _ = logmel_probe_accuracy(corpus, shift_frames=SHIFT_FRAMES)
    assert accuracy > majority + 0.25, (accuracy, majority)
    assert accuracy > shifted + 0.1, (accuracy, shifted)


def test_missing_tools_error_names_the_apt_get_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", "")
    with pytest.raises(synth.MissingToolError, match="apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts espeak-ng bible-kjv"):
        synth.build_corpus(tmp_path / "out", hours=0.01)
    assert not (tmp_path / "out").exists()


def test_cli_reports_missing_tools_and_bad_output_on_one_line(monkeypatch, tmp_path, capsys):
    from cpc.corpus.cli import main

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    assert main(["synth", "--out", str(tmp_path / "full"), "--hours", "0.01"]) == 2
    assert "is not empty" in capsys.readouterr().err
    monkeypatch.setenv("PATH", "")
    assert main(["synth", "--out", str(tmp_path / "new"), "--hours", "0.01"]) == 2
    assert "apt-get install festival" in capsys.readouterr().err
