"""cpc extract: files readable by numpy / kaldiio equal to the model on each utterance alone, exact frame counts,
resume after SIGKILL losing and duplicating nothing, unreadable files counted, one-line CLI errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import small_config, synthetic_utterance, write_corpus

import cpc
import cpc.cli
from cpc.checkpoint import save_checkpoint
from cpc.config import to_container
from cpc.extract import SUMMARY_FILE, ExtractError, extract_corpus
from cpc.speech.audio import list_audio, read_audio
from cpc.speech.features import length_batches

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _extract_command(monkeypatch):
    if "cpc.extract" not in cpc.cli.COMMAND_MODULES:
        monkeypatch.setattr(cpc.cli, "COMMAND_MODULES", [*cpc.cli.COMMAND_MODULES, "cpc.extract"])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small model trained 0 steps (encoder 32 channels, GRU 24), saved as a training run would."""
    folder = tmp_path_factory.mktemp("checkpoint")
    config = small_config(folder)
    torch.manual_seed(0)
    model = cpc.build_model(config)
    path = folder / "model.pt"
    save_checkpoint(path, {"config": to_container(config), "model": model.state_dict(), "step": 0})
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """6 utterances of 0.8-1.2 s at 16 kHz, plus one at 22.05 kHz (resampled on reading, as for training)."""
    root = tmp_path_factory.mktemp("extract-corpus")
    write_corpus(root, speakers=2, utterances=3, seconds=1.0)
    wave = synthetic_utterance(np.random.default_rng(5), 0.7, 150)
    (root / "102" / "1").mkdir(parents=True)
    sf.write(root / "102" / "1" / "102-1-0000.wav", wave, 22050)
    return root


def expected_features(model, path: str, layer: str) -> np.ndarray:
    """The reference: the model on this utterance alone, no padding."""
    wave = torch.from_numpy(read_audio(path))[None]  # (1, S)
    with torch.inference_mode():
        features, lengths = model.extract_features(wave, layer=layer)
    assert lengths.item() == model.output_lengths(torch.tensor([wave.shape[1]])).item()
    return features[0].numpy()


def read_npy(out: Path) -> dict[str, np.ndarray]:
    rows = [line.split("\t") for line in (out / "index.tsv").read_text().splitlines()[1:]]
    ids = [row[0] for row in rows]
    assert len(ids) == len(set(ids)), "duplicate index rows"
    result = {}
    for utterance, frames, path in rows:
        result[utterance] = np.load(out / path)
        assert result[utterance].dtype == np.float32 and len(result[utterance]) == int(frames)
    assert sorted(p.stem for p in out.glob("*.npy")) == sorted(result), (
        "npy files without an index row, or rows without files"
    )
    return result


def read_kaldi(out: Path) -> dict[str, np.ndarray]:
    keys = [line.split(" ", 1)[0] for line in (out / "feats.scp").read_text().splitlines()]
    assert len(keys) == len(set(keys)), "duplicate scp keys"
    assert keys == sorted(keys), "scp not sorted by key"
    result = {key: np.asarray(values) for key, values in kaldiio.load_scp(str(out / "feats.scp")).items()}
    # Nothing but the listed matrices in the ark: each is its key, a space and 15 header bytes + 4 bytes a value.
    assert (out / "feats.ark").stat().st_size == sum(len(k) + 1 + 15 + 4 * v.size for k, v in result.items())
    return result


READERS = {"npy": read_npy, "kaldi": read_kaldi}


@pytest.mark.parametrize(
    "format, layer", [("npy", "context"), ("npy", "encoder"), ("kaldi", "context"), ("kaldi", "encoder")]
)
def test_round_trip_equals_each_utterance_alone(checkpoint, corpus, tmp_path, format, layer):
    model = cpc.load(checkpoint)
    files = list_audio(corpus).files
    # 2 s batches: several batches, most of them padded
    summary = extract_corpus(model, files, tmp_path, layer=layer, format=format, batch_seconds=2.0, progress=False)
    written = READERS[format](tmp_path)
    assert sorted(written) == sorted(f.utterance_id for f in files)
    for file in files:
        reference = expected_features(model, file.path, layer)
        assert written[file.utterance_id].shape == reference.shape
        assert len(reference) == model.output_lengths(torch.tensor([len(read_audio(file.path))])).item()
        np.testing.assert_allclose(written[file.utterance_id], reference, atol=1e-5, rtol=0)
    assert summary["complete"] and summary["counts"]["written"] == len(files) == summary["utterances"]
    assert summary["dimension"] == (32 if layer == "encoder" else 24) and summary["frame_rate_hz"] == 100.0
    assert summary["frames_written"] == sum(len(v) for v in written.values())
    assert json.loads((tmp_path / SUMMARY_FILE).read_text()) == json.loads(json.dumps(summary))


def test_batches_group_by_length_within_the_budget():
    lengths = [500, 100, 300, 200, 900, 2000]
    batches = [[lengths[i] for i in indices] for indices in length_batches(lengths, 1000)]
    assert batches == [[100, 200, 300], [500], [900], [2000]]
    assert all(len(b) * max(b) <= 1000 or len(b) == 1 for b in batches)
    assert length_batches([3, 1, 3, 1], 100) == [[1, 3, 0, 2]]  # stable among equal lengths


def _count_done(out: Path, format: str) -> int:
    name = "index.tsv" if format == "npy" else "feats.scp"
    try:
        lines = (out / name).read_text().splitlines()
    except FileNotFoundError:
        return 0
    return len(lines) - (format == "npy")


@pytest.mark.slow
@pytest.mark.parametrize("format", ["npy", "kaldi"])
def test_resume_after_sigkill_loses_nothing_and_duplicates_nothing(checkpoint, tmp_path, format):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, speakers=4, utterances=15, seconds=0.5)  # 60 utterances, one per 0.6 s batch
    command = [
        sys.executable,
        "-m",
        "cpc.cli",
        "extract",
        str(checkpoint),
        "--data",
        str(corpus),
        "--format",
        format,
        "--batch-seconds",
        "0.6",
        "--no-progress",
    ]
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [*command, "--out", str(killed)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while _count_done(killed, format) < 5 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    done_at_kill = _count_done(killed, format)
    assert process.returncode == -signal.SIGKILL and 5 <= done_at_kill < 60, (process.returncode, done_at_kill)
    assert not json.loads((killed / SUMMARY_FILE).read_text())["complete"]

    # The rerun and the clean run in this process (the same command through cpc.cli.main): a subprocess costs seconds of imports.
    assert cpc.cli.main([*command[3:], "--out", str(killed)]) == 0
    assert cpc.cli.main([*command[3:], "--out", str(tmp_path / "clean")]) == 0

    after_kill, reference = READERS[format](killed), READERS[format](tmp_path / "clean")
    assert sorted(after_kill) == sorted(reference) and len(reference) == 60
    for utterance, values in reference.items():
        np.testing.assert_allclose(after_kill[utterance], values, atol=1e-5, rtol=0)
    summary = json.loads((killed / SUMMARY_FILE).read_text())
    assert summary["complete"] and summary["utterances"] == 60
    assert (
        summary["counts"]["already_done"] >= done_at_kill
        and summary["counts"]["written"] + summary["counts"]["already_done"] == 60
    )
    assert not list(killed.glob(".*.cpc-tmp"))


def test_resume_repairs_each_state_a_kill_can_leave(checkpoint, corpus, tmp_path):
    """The states between the steps of a write, made by hand: each is repaired, and the result equals a clean run."""
    model = cpc.load(checkpoint)
    files = list_audio(corpus).files
    clean = {}
    for format in ("npy", "kaldi"):
        extract_corpus(model, files, tmp_path / f"clean-{format}", format=format, batch_seconds=2.0, progress=False)
        clean[format] = READERS[format](tmp_path / f"clean-{format}")

    # npy: a temporary file (killed before its rename), a file without its index row, a partial last row.
    out = tmp_path / "npy"
    extract_corpus(model, files[:3], out, format="npy", batch_seconds=2.0, progress=False)
    (out / ".103-1-0000.npy.cpc-tmp").write_bytes(b"\x93NUMPY half")
    np.save(out / f"{files[3].utterance_id}.npy", np.zeros((2, 2), np.float32))  # stale, no row: recomputed
    with open(out / "index.tsv", "a") as handle:
        handle.write(f"{files[4].utterance_id}\t1")  # cut short: no newline
    summary = extract_corpus(model, files, out, format="npy", batch_seconds=2.0, progress=False)
    assert summary["counts"]["already_done"] == 3 and summary["counts"]["written"] == len(files) - 3
    assert not list(out.glob(".*.cpc-tmp"))

    # kaldi: matrices in the ark past the last scp line (killed before the scp append), a partial scp line.
    out = tmp_path / "kaldi"
    extract_corpus(model, files[:3], out, format="kaldi", batch_seconds=2.0, progress=False)
    with open(out / "feats.ark", "ab") as handle:
        kaldiio.save_ark(handle, {files[3].utterance_id: np.ones((5, 24), np.float32)})
        handle.write(b"103-1-0001 \x00BFM \x04")  # and a matrix cut short
    with open(out / "feats.scp", "a") as handle:
        handle.write(f"{files[3].utterance_id} {out / 'feats.ark'}:12")
    summary = extract_corpus(model, files, out, format="kaldi", batch_seconds=2.0, progress=False)
    assert summary["counts"]["already_done"] == 3 and summary["counts"]["written"] == len(files) - 3

    for format in ("npy", "kaldi"):
        repaired = READERS[format](tmp_path / format)
        assert sorted(repaired) == sorted(clean[format])
        for utterance, values in clean[format].items():
            np.testing.assert_allclose(repaired[utterance], values, atol=1e-5, rtol=0)


def test_unreadable_and_too_short_files_are_skipped_named_and_counted(checkpoint, tmp_path, caplog, capsys):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, speakers=1, utterances=3, seconds=0.5)
    (corpus / "100" / "1" / "100-1-bad.flac").write_bytes(b"not audio at all")  # fails when listed
    sf.write(corpus / "100" / "1" / "100-1-short.wav", np.zeros(8, np.float32), 16000)  # 8 samples: no frame
    out = tmp_path / "out"
    assert cpc.cli.main(["extract", str(checkpoint), "--data", str(corpus), "--out", str(out)]) == 0
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["counts"] == {
        "listed": 5,
        "written": 3,
        "already_done": 0,
        "unreadable": 1,
        "too_short": 1,
        "changed": 0,
    }
    assert summary["unreadable_files"] == [str(corpus / "100" / "1" / "100-1-bad.flac")]
    assert summary["too_short_utterances"] == ["100-1-short"]
    assert "100-1-bad.flac" in caplog.text and "100-1-short.wav" in caplog.text
    captured = capsys.readouterr()
    assert "3 utterance(s) written" in captured.out and "1 unreadable, 1 too short" in captured.out
    assert "extract context" not in captured.err  # no progress bar off a terminal

    # A file that lists fine but cannot be read when its turn comes (removed in between).
    model = cpc.load(checkpoint)
    files = list_audio(corpus).files
    gone = files[0]
    os.unlink(gone.path)
    summary = extract_corpus(model, files, tmp_path / "again", progress=False)
    assert summary["counts"]["unreadable"] == 1 and summary["unreadable_files"] == [gone.path]
    assert summary["counts"]["written"] == 2


def test_duplicate_utterance_ids_are_an_error_naming_them(checkpoint, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    for speaker in ("1", "2"):
        (corpus / speaker / "1").mkdir(parents=True)
        sf.write(corpus / speaker / "1" / "same-id.wav", np.zeros(1600, np.float32), 16000)
    assert cpc.cli.main(["extract", str(checkpoint), "--data", str(corpus), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "same-id" in err[0] and "1/1/same-id.wav" in err[0] and "2/1/same-id.wav" in err[0], err


def test_another_model_or_layer_is_refused_in_the_same_folder(checkpoint, corpus, tmp_path):
    model = cpc.load(checkpoint)
    files = list_audio(corpus).files[:2]
    extract_corpus(model, files, tmp_path, progress=False)
    with pytest.raises(ExtractError, match="another layer 'context' \\(now 'encoder'\\)"):
        extract_corpus(model, files, tmp_path, layer="encoder", progress=False)
    torch.nn.init.zeros_(model.context.rnn.bias_hh_l0)
    with pytest.raises(ExtractError, match="another model_fingerprint"):
        extract_corpus(model, files, tmp_path, progress=False)


@pytest.mark.parametrize(
    "args, message",
    [
        (["MISSING.pt"], "checkpoint MISSING.pt does not exist"),
        (["CKPT", "--format", "hdf5"], "--format 'hdf5': expected one of npy, kaldi"),
        (["CKPT", "--layer", "predictor"], "--layer 'predictor': expected one of context, encoder"),
        (["CKPT", "--batch-seconds", "0"], "--batch-seconds must be a positive number of seconds, got 0.0"),
        (["CKPT", "--batch-seconds", "-3"], "--batch-seconds must be a positive number of seconds, got -3.0"),
        (["CKPT", "--threads", "0"], "--threads must be at least 1, got 0"),
        (["CKPT", "--out", "FILE"], "is a file, not a folder"),
        (["CKPT", "--data", "NOWHERE"], "data source NOWHERE does not exist"),
    ],
    ids=[
        "missing-checkpoint",
        "bad-format",
        "bad-layer",
        "batch-seconds-0",
        "batch-seconds-negative",
        "threads-0",
        "out-is-a-file",
        "missing-data",
    ],
)
def test_bad_input_is_one_line(checkpoint, corpus, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FILE").write_text("")
    args = [str(checkpoint) if a == "CKPT" else a for a in args]
    if "--data" not in args:
        args += ["--data", str(corpus)]
    if "--out" not in args:
        args += ["--out", "out"]
    assert cpc.cli.main(["extract", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cpc extract: error: ") and message in err[0], err
    assert not (tmp_path / "out").exists()  # nothing written before the checks


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_cuda_without_a_device_is_one_line(checkpoint, corpus, tmp_path, capsys):
    assert (
        cpc.cli.main(
            ["extract", str(checkpoint), "--data", str(corpus), "--out", str(tmp_path / "out"), "--device", "cuda"]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "device cuda: no CUDA device is available" in err[0], err
