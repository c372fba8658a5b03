"""Baseline features (torchaudio vs torch/librosa fallback), model features, cache, label alignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cpc.checkpoint import CheckpointError, save_checkpoint
from cpc.speech import features as F
from cpc.speech.audio import AudioFile

needs_torchaudio = pytest.mark.skipif(not F.have_torchaudio(), reason="torchaudio does not import here")


def _wave(seconds: float = 1.03, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


@needs_torchaudio
@pytest.mark.parametrize("num_mels", [40, 80])
def test_log_mel_torchaudio_and_fallback_agree(num_mels):
    wave = _wave()
    reference = F.log_mel_spectrogram(wave, num_mels, backend="torchaudio")
    fallback = F.log_mel_spectrogram(wave, num_mels, backend="torch")
    assert reference.shape == fallback.shape == (len(wave) // 160, num_mels)
    # Compare in the power domain (relative), as the log amplifies float noise in near-empty bins.
    assert torch.allclose(fallback.exp(), reference.exp(), rtol=1e-4, atol=1e-9)


@needs_torchaudio
def test_mfcc_matches_torchaudio_transform_and_fallback():
    import torchaudio

    wave = _wave()
    ours = F.mfcc(wave, backend="torchaudio")
    fallback = F.mfcc(wave, backend="torch")
    assert ours.shape == (len(wave) // 160, 39)
    assert torch.allclose(ours, fallback, atol=1e-3, rtol=1e-4)
    transform = torchaudio.transforms.MFCC(
        sample_rate=16000,
        n_mfcc=13,
        melkwargs=dict(n_fft=400, win_length=400, hop_length=160, n_mels=40, mel_scale="htk"),
    )
    reference = transform(torch.from_numpy(wave))  # (13, T + 1)
    assert torch.allclose(ours[:, :13], reference.T[: len(ours)], atol=1e-3, rtol=1e-5)
    deltas = torchaudio.functional.compute_deltas(
        reference[:, : len(ours)]
    )  # replicate padding at both ends, like ours
    assert torch.allclose(ours[:, 13:26], deltas.T, atol=1e-3)
    assert torch.allclose(F.dct_matrix(13, 40), torchaudio.functional.create_dct(13, 40, "ortho"), atol=1e-6)


@pytest.mark.parametrize("num_samples", [100, 399, 400, 16000, 16159, 16160])
def test_baselines_are_on_the_label_grid(num_samples):
    wave = _wave(num_samples / 16000)
    for name in ("mfcc", "logmel", "logmel80"):
        (values,) = F.feature_set(name).compute([wave])
        assert values.shape[0] == num_samples // 160
        assert values.dtype == np.float32 and np.isfinite(values).all()


def test_deltas_hand_values():
    ramp = torch.arange(6, dtype=torch.float32)[:, None]  # slope 1: interior deltas are 1
    assert torch.allclose(F.deltas(ramp)[2:4, 0], torch.ones(2))
    # Replicated edges: at t=0, (1*(c1 - c0) + 2*(c2 - c0)) / 10 = (1 + 4) / 10.
    assert F.deltas(ramp)[0, 0].item() == pytest.approx(0.5)


def _tiny_model_config(channels: int = 16) -> dict:
    layers = [
        dict(channels=channels, kernel_size=k, stride=s, padding=p)
        for k, s, p in [(10, 5, 3), (8, 4, 2), (4, 2, 1), (4, 2, 1), (4, 2, 1)]
    ]
    return {
        "model": {
            "encoder": {"layers": layers},
            "context": {"hidden_size": 12},
            "predictor": {"prediction_steps": 3},
            "loss": {"num_negatives": 4},
        }
    }


@pytest.mark.parametrize("layer", ["context", "encoder"])
def test_model_features_batched_equal_one_by_one(layer):
    from cpc.model import build_model

    torch.manual_seed(0)
    model = build_model(_tiny_model_config())
    features = F.ModelFeatures(model, layer, name="tiny", fingerprint="tiny", batch_samples=100_000)
    waves = [_wave(seconds, seed) for seed, seconds in enumerate([0.5, 1.2, 0.31, 0.9])]
    batched = features.compute(waves)
    for wave, values in zip(waves, batched):
        (alone,) = features.compute([wave])
        assert (
            values.shape
            == alone.shape
            == (int(model.output_lengths(torch.tensor(len(wave)))), 12 if layer == "context" else 16)
        )
        np.testing.assert_allclose(values, alone, atol=1e-5)
        assert abs(len(values) - len(wave) // 160) <= 1


@pytest.mark.parametrize("threads, inside", [(None, 2), (1, 1)])
def test_model_features_keep_the_callers_thread_count_unless_asked(threads, inside):
    from cpc.model import build_model

    model = build_model(_tiny_model_config())
    seen = []
    model.encoder.register_forward_hook(lambda module, inputs, output: seen.append(torch.get_num_threads()))
    features = F.ModelFeatures(model, "context", name="tiny", fingerprint="tiny", threads=threads)
    torch.set_num_threads(2)  # the caller's setting (conftest sets 1 before each test)
    features.compute([_wave(0.3), _wave(0.2, 1)])
    assert seen == [inside]  # one batch
    assert torch.get_num_threads() == 2


def test_torch_threads_restores_the_count_and_rejects_zero():
    torch.set_num_threads(2)
    with F.torch_threads(1):
        assert torch.get_num_threads() == 1
    with F.torch_threads(None):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="threads=0"):
        with F.torch_threads(0):
            pass


def test_random_model_leaves_the_global_rng_alone():
    torch.manual_seed(5)
    state = torch.get_rng_state()
    model, _ = F.random_model(None)
    assert torch.equal(torch.get_rng_state(), state)
    with F.seeded(0):  # the same initialisation as after torch.manual_seed(0)
        again = F.random_model(None)[0]
    assert all(torch.equal(value, again.state_dict()[key]) for key, value in model.state_dict().items())


def _write_waves(tmp_path, count=3):
    import soundfile as sf

    files = {}
    for index in range(count):
        path = tmp_path / f"spk-1-{index}.flac"
        wave = _wave(0.5 + 0.1 * index, index)
        sf.write(path, wave, 16000)
        files[path.stem] = AudioFile(str(path), len(wave), "spk")
    return files


def test_cache_is_reused_and_keyed_by_corpus(tmp_path, monkeypatch):
    files = _write_waves(tmp_path)
    cache = F.FeatureCache(tmp_path / "cache")
    mfcc = F.feature_set("mfcc")
    first = F.extract(mfcc, files, list(files), cache=cache, corpus_root=tmp_path, progress=False)
    monkeypatch.setattr(type(mfcc), "compute", lambda self, waves: pytest.fail("recomputed a cached utterance"))
    again = F.extract(mfcc, files, list(files), cache=cache, corpus_root=tmp_path, progress=False)
    for utterance in files:
        np.testing.assert_array_equal(first[utterance], again[utterance])
    assert F.FeatureCache.key(mfcc, tmp_path) != F.FeatureCache.key(mfcc, tmp_path / "other")
    assert F.FeatureCache.key(mfcc, tmp_path) != F.FeatureCache.key(F.feature_set("logmel"), tmp_path)


def test_cache_recomputes_an_utterance_whose_audio_changed_and_reuses_the_others(tmp_path, monkeypatch):
    import os

    import soundfile as sf

    files = _write_waves(tmp_path)
    cache = F.FeatureCache(tmp_path / "cache")
    mfcc = F.feature_set("mfcc")
    first = F.extract(mfcc, files, list(files), cache=cache, corpus_root=tmp_path, progress=False)
    changed = "spk-1-1"
    noise = np.random.default_rng(9).standard_normal(files[changed].num_samples).astype(np.float32) * 0.1
    sf.write(files[changed].path, noise, 16000)  # same path, same length: only the content differs
    stat = os.stat(files[changed].path)
    os.utime(
        files[changed].path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000)
    )  # a coarse clock could repeat the mtime
    computed = []
    compute = type(mfcc).compute
    monkeypatch.setattr(type(mfcc), "compute", lambda self, waves: computed.append(len(waves)) or compute(self, waves))
    again = F.extract(mfcc, files, list(files), cache=cache, corpus_root=tmp_path, progress=False)
    assert computed == [1]  # only the changed file
    from cpc.speech.audio import read_audio

    (fresh,) = compute(
        mfcc, [read_audio(files[changed].path)]
    )  # FLAC stores 16-bit samples: compare with what it reads back
    np.testing.assert_allclose(again[changed], fresh, atol=1e-5)
    assert not np.allclose(again[changed], first[changed])
    for utterance in set(files) - {changed}:
        np.testing.assert_array_equal(first[utterance], again[utterance])
    computed.clear()
    F.extract(
        mfcc, files, list(files), cache=cache, corpus_root=tmp_path, progress=False
    )  # the replaced entry is used from now on
    assert computed == []
    assert sorted(p.name for p in next((tmp_path / "cache").iterdir()).glob("*.npz")) == sorted(
        f"{u}.npz" for u in files
    )


def test_checkpoint_cache_key_follows_the_file(tmp_path):
    from cpc.config import load_config, to_container
    from cpc.model import build_model

    config = load_config(
        None,
        [
            f"model.encoder.layers=[{','.join(f'{{channels: 8, kernel_size: {k}, stride: {st}, padding: {pad}}}' for k, st, pad in [(10, 5, 3), (8, 4, 2), (4, 2, 1), (4, 2, 1), (4, 2, 1)])}]",
            "model.context.hidden_size=8",
        ],
    )
    path = tmp_path / "model.pt"
    save_checkpoint(path, {"config": to_container(config), "model": build_model(config).state_dict(), "step": 1})
    context, encoder = F.feature_set(str(path), layer="context"), F.feature_set(str(path), layer="encoder")
    assert F.FeatureCache.key(context, tmp_path) != F.FeatureCache.key(encoder, tmp_path)
    before = F.FeatureCache.key(context, tmp_path)
    save_checkpoint(path, {"config": to_container(config), "model": build_model(config).state_dict(), "step": 2})
    assert F.FeatureCache.key(F.feature_set(str(path)), tmp_path) != before


def test_checkpoint_of_another_format_version_is_a_clear_error(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format_version": 999, "config": {}, "model": {}}, path)
    with pytest.raises(CheckpointError, match="old.pt.*format version 999"):
        F.feature_set(str(path))


def test_unknown_feature_set_and_missing_audio(tmp_path):
    with pytest.raises(F.FeatureError, match="unknown feature set 'nope'"):
        F.feature_set("nope")
    files = _write_waves(tmp_path, 1)
    with pytest.raises(F.FeatureError, match="ghost-1-0"):
        F.extract(F.feature_set("mfcc"), files, [*files, "ghost-1-0"], progress=False)


def test_random_feature_set_is_seeded():
    first = F.feature_set("random").model.state_dict()
    second = F.feature_set("random").model.state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_align_to_labels_trims_ends_and_rejects_large_mismatch():
    features, labels = np.zeros((100, 3)), np.zeros(98, dtype=np.int64)
    x, y, dropped = F.align_to_labels(features, labels, "utt-a")
    assert len(x) == len(y) == 98 and dropped == 2
    with pytest.raises(F.FeatureError, match="utt-b: 100 feature frames but 97 label frames"):
        F.align_to_labels(features, labels[:97], "utt-b")
