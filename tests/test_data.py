"""Speech data: corpus layouts, bad files, resampling, splits and the window sampler."""

import logging

import numpy as np
import pytest
import soundfile as sf
from conftest import synthetic_utterance, write_corpus

from cpc.speech import audio, optional_torchaudio
from cpc.speech.audio import list_audio, read_audio, resample
from cpc.speech.windows import SpeechWindows, WindowSampler, split_corpus, validation_windows


def test_librispeech_layout_flat_folder_and_manifest(tmp_path):
    paths = write_corpus(tmp_path / "libri", speakers=2, utterances=2)
    listing = list_audio(tmp_path / "libri")
    assert [f.speaker for f in listing.files] == ["100", "100", "101", "101"]
    assert [f.utterance_id for f in listing.files] == [p.stem for p in paths]
    assert all(f.num_samples == sf.info(f.path).frames for f in listing.files)

    flat = tmp_path / "flat"
    flat.mkdir()
    wave = synthetic_utterance(np.random.default_rng(0), 0.5, 120)
    sf.write(flat / "alice-001.wav", wave, 16000)
    sf.write(flat / "bob-001.ogg", wave, 16000)
    assert sorted(f.speaker for f in list_audio(flat).files) == ["alice", "bob"]

    manifest = tmp_path / "manifest.tsv"
    manifest.write_text("path\tnum_samples\tspeaker\nflat/alice-001.wav\t8000\tA\n" + f"{paths[0]}\t0\tB\n")
    rows = list_audio(manifest).files
    assert [(f.speaker, f.num_samples) for f in rows] == [("A", len(wave)), ("B", sf.info(paths[0]).frames)]


def test_unreadable_files_are_skipped_named_and_counted(tmp_path, caplog):
    write_corpus(tmp_path, speakers=1, utterances=2)
    (tmp_path / "100" / "1" / "100-1-broken.flac").write_bytes(b"this is not audio")
    with caplog.at_level(logging.WARNING):
        listing = list_audio(tmp_path)
    assert len(listing.files) == 2 and len(listing.unreadable) == 1
    assert "100-1-broken.flac" in caplog.text and "skipped 1 unreadable" in caplog.text


def test_empty_or_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_audio(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no readable audio in .*empty"):
        list_audio(tmp_path / "empty")


def test_short_files_are_not_used_for_windows(tmp_path, caplog):
    write_corpus(tmp_path, speakers=2, utterances=3, seconds=1.0)
    sf.write(tmp_path / "100" / "1" / "100-1-short.flac", np.zeros(1000, np.float32), 16000)
    with caplog.at_level(logging.WARNING):
        corpus = split_corpus(str(tmp_path), 4000, valid_fraction=0.0)
    assert corpus.too_short == [str(tmp_path / "100" / "1" / "100-1-short.flac")]
    assert all(f.num_samples >= 4000 for f in corpus.train)
    assert "1 file(s) shorter than the 4000-sample window" in caplog.text
    with pytest.raises(ValueError, match="no training file .* full window of 100000"):
        split_corpus(str(tmp_path), 100_000)


def test_split_files_and_missing_ids(tmp_path):
    paths = write_corpus(tmp_path / "c", speakers=2, utterances=3)
    (tmp_path / "train.txt").write_text("\n".join(p.stem for p in paths[:4]) + "\n")
    (tmp_path / "valid.txt").write_text(paths[4].stem + "\n")
    corpus = split_corpus(
        str(tmp_path / "c"), 4000, train_split=str(tmp_path / "train.txt"), valid_split=str(tmp_path / "valid.txt")
    )
    assert [f.utterance_id for f in corpus.train] == [p.stem for p in paths[:4]]
    assert [f.utterance_id for f in corpus.valid] == [paths[4].stem]
    (tmp_path / "bad.txt").write_text("nobody-1-0001\n" + paths[0].stem + "\n")
    with pytest.raises(ValueError, match="1 utterance id.*nobody-1-0001"):
        split_corpus(str(tmp_path / "c"), 4000, train_split=str(tmp_path / "bad.txt"))


@pytest.mark.parametrize("backend", ["librosa", "torchaudio"])
def test_other_sample_rates_are_resampled(tmp_path, backend):
    if backend == "torchaudio" and not optional_torchaudio.available():
        pytest.skip("torchaudio does not import with this torch build; the librosa path is tested")
    t = np.arange(22050) / 22050
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path / "a-1.wav"
    sf.write(path, np.stack([tone, tone], 1), 22050)  # stereo at 22.05 kHz
    info = audio.probe(path, "a")
    assert info.num_samples == 16000 and info.sample_rate == 22050
    wave = read_audio(path)
    assert wave.ndim == 1 and abs(len(wave) - 16000) <= 1
    converted = resample(tone, 22050, 16000, backend=backend)
    spectrum = np.abs(np.fft.rfft(converted[2000:14000]))
    assert abs(np.argmax(spectrum) * 16000 / 12000 - 440) < 2  # the tone stays at 440 Hz
    if optional_torchaudio.available():  # both backends agree away from the edges
        other = resample(tone, 22050, 16000, backend="torchaudio" if backend == "librosa" else "librosa")
        np.testing.assert_allclose(converted[500:-500], other[500:-500], atol=2e-3)


def test_windows_read_only_what_they_need(tmp_path):
    paths = write_corpus(tmp_path, speakers=1, utterances=1, seconds=2.0)
    whole = read_audio(paths[0])
    dataset = SpeechWindows(list_audio(tmp_path).files, 4000)
    np.testing.assert_array_equal(dataset[(0, 1234)].numpy(), whole[1234:5234])


def test_corrupt_data_at_read_time_uses_another_file(tmp_path, caplog):
    paths = write_corpus(tmp_path, speakers=1, utterances=2, seconds=1.0)
    files = list_audio(tmp_path).files
    paths[0].write_bytes(b"corrupted after listing")
    dataset = SpeechWindows(files, 4000)
    with caplog.at_level(logging.WARNING):
        window = dataset[(0, 0)]
    np.testing.assert_array_equal(window.numpy(), read_audio(paths[1])[:4000])
    assert paths[0].name in caplog.text


def test_sampler_is_deterministic_per_step_and_distinct_per_rank(tmp_path):
    write_corpus(tmp_path, speakers=3, utterances=4)
    files = list_audio(tmp_path).files
    sampler = WindowSampler(files, 4000, 4, seed=1)
    again = WindowSampler(files, 4000, 4, seed=1, start_step=5)
    assert sampler.batch(5) == next(iter(again))
    assert sampler.batch(5) != WindowSampler(files, 4000, 4, seed=2).batch(5)
    rank0 = WindowSampler(files, 4000, 4, seed=1, rank=0, world_size=2)
    rank1 = WindowSampler(files, 4000, 4, seed=1, rank=1, world_size=2)
    for step in range(rank0.batches_per_epoch * 2 + 1):  # across an epoch boundary
        assert rank0.batch(step) != rank1.batch(step)
        for file_index, offset in rank0.batch(step) + rank1.batch(step):
            assert 0 <= offset <= files[file_index].num_samples - 4000


def test_same_speaker_batches(tmp_path):
    write_corpus(tmp_path, speakers=3, utterances=4)
    files = list_audio(tmp_path).files
    sampler = WindowSampler(files, 4000, 6, seed=0, same_speaker=True)
    speakers_seen = set()
    for step in range(20):
        batch_speakers = {files[i].speaker for i, _ in sampler.batch(step)}
        assert len(batch_speakers) == 1
        speakers_seen |= batch_speakers
    assert len(speakers_seen) == 3


def test_validation_windows_are_fixed_and_shared_out(tmp_path):
    write_corpus(tmp_path, speakers=2, utterances=2)
    files = list_audio(tmp_path).files
    windows = validation_windows(files, 4000, 6)
    assert len(windows) == 6 and windows == validation_windows(files, 4000, 6)
    halves = validation_windows(files, 4000, 6, rank=0, world_size=2) + validation_windows(
        files, 4000, 6, rank=1, world_size=2
    )
    assert sorted(halves) == sorted(windows)
