"""The corpus builder: formats, determinism, label/audio alignment, missing tools, the CLI, and
the variation (prosody, room, noise): it is real, it moves no label, its SNR is the one asked
for, and each part switches off.

Needs the engines (``apt-get install festival festvox-kallpc16k festvox-kdlpc16k
festvox-us-slt-hts espeak-ng bible-kjv``); the tests skip, naming that line, only when they are
genuinely absent. Corpora are tiny (a few minutes of audio) so the file runs in well under a minute.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from test_corpus_formats import check_built_corpus

from cpc.speech.audio import read_audio
from cpc.speech.corpus import synth, variation
from cpc.speech.corpus.formats import load_corpus, read_alignments

try:
    synth.check_tools()
    MISSING = None
except synth.MissingToolError as error:
    MISSING = str(error)

needs_engines = pytest.mark.skipif(MISSING is not None, reason=f"{MISSING}")

SHIFT_FRAMES = 10  # 100 ms
REPO = Path(__file__).resolve().parents[1]


def _checksums(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "built"
    synth.build_corpus(out, hours=0.1, seed=3, workers=2)
    return out


def logmel_probe_accuracy(
    corpus, *, shift_frames: int = 0, max_train_frames: int = 6000, seed: int = 0
) -> tuple[float, float]:
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


@pytest.mark.slow
@needs_engines
def test_same_arguments_give_byte_identical_files(tmp_path):
    """The default build: prosody, room and noise on (their random draws are planned by the parent)."""
    first, second = tmp_path / "a", tmp_path / "b"
    synth.build_corpus(first, hours=0.03, seed=1, workers=2)
    assert json.loads((first / "summary.json").read_text())["variation"]["reverb"]
    synth.build_corpus(second, hours=0.03, seed=1, workers=1)  # worker count must not matter either
    assert _checksums(first) == _checksums(second)
    assert any(name.endswith(".flac") for name in _checksums(first))


@pytest.mark.slow
@needs_engines
def test_labels_line_up_with_the_audio(built):
    corpus = load_corpus(built)
    accuracy, majority = logmel_probe_accuracy(corpus)
    shifted, _ = logmel_probe_accuracy(corpus, shift_frames=SHIFT_FRAMES)
    assert accuracy > majority + 0.25, (accuracy, majority)
    assert accuracy > shifted + 0.1, (accuracy, shifted)


def test_missing_tools_error_names_the_apt_get_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", "")
    with pytest.raises(
        synth.MissingToolError,
        match="apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts espeak-ng bible-kjv",
    ):
        synth.build_corpus(tmp_path / "out", hours=0.01)
    assert not (tmp_path / "out").exists()


def test_cli_reports_missing_tools_and_bad_output_on_one_line(monkeypatch, tmp_path, capsys):
    from cpc.speech.corpus.cli import main

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    assert main(["synth", "--out", str(tmp_path / "full"), "--hours", "0.01"]) == 2
    assert "is not empty" in capsys.readouterr().err
    monkeypatch.setenv("PATH", "")
    assert main(["synth", "--out", str(tmp_path / "new"), "--hours", "0.01"]) == 2
    assert "apt-get install festival" in capsys.readouterr().err


@pytest.mark.parametrize("hours", ["inf", "nan", "0", "-1"])
def test_hours_that_are_not_a_positive_number_are_one_line(hours, tmp_path, capsys):
    from cpc.speech.corpus.cli import main

    assert main(["synth", "--out", str(tmp_path / "out"), "--hours", hours]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"cpc data: error: hours must be a positive number, got {float(hours)}"
    ]
    assert not (tmp_path / "out").exists()


def test_overwrite_never_deletes_a_folder_that_is_not_a_build(tmp_path, capsys):
    from cpc.speech.corpus.cli import main

    (tmp_path / "mine" / "100").mkdir(parents=True)
    (tmp_path / "mine" / "100" / "notes.txt").write_text("keep me")
    assert main(["synth", "--out", str(tmp_path / "mine"), "--hours", "0.01", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"cpc data: error: output folder {tmp_path / 'mine'} is not empty and is not a corpus built by "
        f"`cpc data synth` (100/notes.txt is none of its files); remove it or choose another folder"
    ]
    assert (tmp_path / "mine" / "100" / "notes.txt").read_text() == "keep me"


def test_a_built_corpus_without_its_summary_counts_as_unfinished(built, tmp_path):
    """Every file but summary.json (written last): a build interrupted at its very end."""
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    with pytest.raises(
        ValueError, match=r"already holds a finished corpus \(0\.\d+ h, \d+ utterances, seed 3\); pass --overwrite"
    ):
        synth._check_output_folder(copy, overwrite=False)
    assert synth._check_output_folder(copy, overwrite=True) == "finished"
    (copy / "summary.json").unlink()
    assert synth._check_output_folder(copy, overwrite=False) == "unfinished"
    (copy / "abx" / "extra.item").write_text("")
    with pytest.raises(ValueError, match=r"abx/extra.item is none of its files"):
        synth._check_output_folder(copy, overwrite=True)


@pytest.mark.slow
@needs_engines
def test_ctrl_c_is_one_line_and_the_rerun_rebuilds_the_unfinished_folder(tmp_path, caplog, capsys):
    from cpc.speech.corpus.cli import main

    out = tmp_path / "corpus"
    command = [
        sys.executable,
        "-m",
        "cpc.speech.corpus.cli",
        "synth",
        "--out",
        str(out),
        "--hours",
        "0.01",
        "--seed",
        "4",
    ]
    # Its own session, so that SIGINT goes to the builder, its workers and their engines, as Ctrl-C in a terminal does.
    # SIGINT back to its default disposition: a shell without job control starts background jobs with it ignored.
    builder = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.time() + 120
        while not list(out.glob("*/*/*.flac")):
            assert builder.poll() is None and time.time() < deadline, builder.communicate()
            time.sleep(0.02)
        os.killpg(builder.pid, signal.SIGINT)
        _, err = builder.communicate(timeout=60)
    finally:
        if builder.poll() is None:  # never leave a build behind, whatever failed
            os.killpg(builder.pid, signal.SIGKILL)
            builder.wait()
    assert builder.returncode == 130 and "Traceback" not in err, err
    assert err.splitlines()[-1] == (
        f"cpc data: interrupted: {out} holds an unfinished build (no summary.json); "
        f"run the same command again to rebuild it"
    ), err
    assert not (out / "summary.json").exists()

    assert main(command[3:]) == 0  # the same command again
    assert (
        f"{out} holds an unfinished build (no summary.json: interrupted?); deleting it and building again"
        in caplog.text
    )
    check_built_corpus(out)
    rebuilt = _checksums(out)

    assert main(command[3:]) == 2  # now finished: kept unless --overwrite
    assert "already holds a finished corpus" in capsys.readouterr().err
    assert main([*command[3:], "--overwrite"]) == 0
    assert _checksums(out) == rebuilt


# ----------------------------------------------------------------------------- variation
def _lag_of_peak_correlation(dry: np.ndarray, wet: np.ndarray, max_lag: int) -> int:
    lags = np.arange(-max_lag, max_lag + 1)
    correlation = [
        np.dot(dry[max(0, -lag) : len(dry) - max(0, lag)], wet[max(0, lag) : len(wet) - max(0, -lag)]) for lag in lags
    ]
    return int(lags[np.argmax(correlation)])


def test_room_impulse_response_has_its_direct_path_at_sample_0(monkeypatch):
    """With no reflections (image order 0) the response is the direct path alone: at sample 0, and
    reverberating white noise with it delays nothing. With reflections, sample 0 is still that path."""
    dry = np.random.default_rng(1).standard_normal(16000)
    for seed in range(5):
        with monkeypatch.context() as patch:
            patch.setattr(variation, "MAX_IMAGE_ORDER", 0)
            direct = variation.room_impulse_response(np.random.default_rng(seed), (0.2, 0.7), 16000)
        response = variation.room_impulse_response(np.random.default_rng(seed), (0.2, 0.7), 16000)
        assert np.argmax(np.abs(direct)) == 0  # within half a sample: the path arrives at a fractional delay
        assert _lag_of_peak_correlation(dry, variation.reverberate(dry, direct), 200) == 0
        assert response[0] == pytest.approx(direct[0], rel=0.1) and len(response) > 1000
        assert len(variation.reverberate(dry, response)) == len(dry)


@pytest.mark.parametrize("snr_db", [0.0, 12.5, 30.0])
def test_added_noise_has_the_requested_snr(snr_db):
    rng = np.random.default_rng(2)
    speech = np.sin(np.arange(32000) / 10.0) * np.linspace(0, 1, 32000)
    noisy = variation.add_noise(speech, snr_db, rng, 16000)
    noise = noisy - speech
    assert 10 * np.log10(np.mean(speech**2) / np.mean(noise**2)) == pytest.approx(snr_db, abs=1e-6)
    spectrum = np.abs(np.fft.rfft(noise)) ** 2
    assert spectrum[: int(len(noise) * 40 / 16000)].sum() < 1e-9 * spectrum.sum()  # nothing below 50 Hz


def test_word_factors_vary_by_word_and_phrase_within_their_range():
    text = "And he said, Behold, the man is become as one of us, to know good and evil: and now, lest he put forth his hand"
    stretches, pitches = variation.word_factors(text, np.random.default_rng(0))
    assert len(stretches) == len(pitches) == len(text.split())
    assert np.std(np.log(stretches)) > 0.08 and np.std(np.log(pitches)) > 0.04
    assert (
        min(stretches + pitches) >= variation.FACTOR_RANGE[0] and max(stretches + pitches) <= variation.FACTOR_RANGE[1]
    )
    assert (stretches, pitches) == variation.word_factors(text, np.random.default_rng(0))


@pytest.mark.parametrize(
    "field, value", [("snr_db", (20, 10)), ("snr_db", (float("nan"), 10)), ("rt60", (0.1, 0.5)), ("rt60", (0.5, 0.3))]
)
def test_bad_variation_ranges_are_one_line(field, value, tmp_path, capsys):
    from cpc.speech.corpus.cli import main

    with pytest.raises(ValueError, match=field):
        variation.Variation(**{field: value})
    flag = "--snr-db" if field == "snr_db" else "--rt60"
    assert main(["synth", "--out", str(tmp_path / "out"), "--hours", "0.01", flag, *map(str, value)]) == 2
    assert capsys.readouterr().err.startswith(f"cpc data: error: {field} must be")
    assert not (tmp_path / "out").exists()


FIXED_SNR_DB = 12.0
FLAVOURS = {
    "clean": variation.CLEAN,
    "prosody": variation.Variation(reverb=False, noise=False),
    "room": variation.Variation(noise=False),
    "noise": variation.Variation(reverb=False, snr_db=(FIXED_SNR_DB, FIXED_SNR_DB)),
    "all": variation.Variation(),
}


@pytest.fixture(scope="module")
def flavours(tmp_path_factory) -> dict[str, Path]:
    """One tiny corpus (6 speakers, ~24 utterances) per set of options, same seed."""
    root = tmp_path_factory.mktemp("flavours")
    for name, options in FLAVOURS.items():
        synth.build_corpus(root / name, hours=0.02, seed=5, workers=2, variation=options)
    return {name: root / name for name in FLAVOURS}


def _waves(root: Path) -> dict[str, np.ndarray]:
    return {path.stem: read_audio(path).astype(np.float64) for path in sorted(root.glob("*/*/*.flac"))}


def _context_duration_spread(root: Path) -> float:
    """Pooled within-(speaker, previous, phone, next) standard deviation of log phone durations (frame runs)."""
    groups: dict[tuple, list[float]] = {}
    for utterance, labels in read_alignments(root / "alignments.txt").items():
        bounds = np.flatnonzero(np.diff(labels)) + 1
        runs = np.split(labels, bounds)
        for index in range(1, len(runs) - 1):
            key = (utterance.split("-")[0], runs[index - 1][0], runs[index][0], runs[index + 1][0])
            groups.setdefault(key, []).append(np.log(len(runs[index])))
    deviations = [value - np.mean(values) for values in groups.values() if len(values) >= 2 for value in values]
    return float(np.sqrt(np.mean(np.square(deviations))))


@needs_engines
def test_prosody_makes_tokens_of_a_phone_differ_within_a_speaker(flavours):
    clean, varied = _context_duration_spread(flavours["clean"]), _context_duration_spread(flavours["prosody"])
    assert varied > 1.5 * clean, (clean, varied)
    summary = json.loads((flavours["prosody"] / "summary.json").read_text())
    assert summary["variation"]["prosody"] and not summary["variation"]["reverb"] and not summary["variation"]["noise"]


@needs_engines
def test_room_and_noise_move_no_label_and_each_option_switches_its_part_off(flavours):
    labels = {name: (root / "alignments.txt").read_text() for name, root in flavours.items()}
    assert labels["prosody"] == labels["room"] == labels["noise"] == labels["all"] != labels["clean"]
    waves = {name: _waves(root) for name, root in flavours.items()}
    assert waves["prosody"].keys() == waves["all"].keys()
    for utterance, dry in waves["prosody"].items():
        assert all(len(waves[name][utterance]) == len(dry) for name in ("room", "noise", "all"))
        assert not np.array_equal(dry, waves["room"][utterance]) and not np.array_equal(dry, waves["noise"][utterance])
    check_built_corpus(flavours["all"])


@needs_engines
def test_reverberant_speech_lines_up_with_the_dry_speech(flavours):
    """The room's direct path is at sample 0: the cross-correlation of dry and reverberant speech peaks at lag 0."""
    wet_waves = _waves(flavours["room"])
    lags = [
        _lag_of_peak_correlation(dry, wet_waves[utterance], 160)
        for utterance, dry in _waves(flavours["prosody"]).items()
    ]
    # A fractional direct path can put the peak a sample early; a strong early reflection (floor and
    # ceiling images arriving together) can outweigh it in a few utterances. A wrongly cut response
    # (pyroomacoustics' 40-sample filter delay, or the distance) would move every peak.
    assert sum(abs(lag) <= 1 for lag in lags) >= 0.75 * len(lags), lags


@needs_engines
def test_noise_in_the_built_corpus_has_the_requested_snr(flavours):
    """The noisy wave is the dry one (scaled) plus noise: project out the dry part and measure what is left."""
    noisy_waves = _waves(flavours["noise"])
    for utterance, dry in _waves(flavours["prosody"]).items():
        noisy = noisy_waves[utterance]
        scale = np.dot(noisy, dry) / np.dot(dry, dry)
        residual = noisy - scale * dry
        measured = 10 * np.log10(np.sum((scale * dry) ** 2) / np.sum(residual**2))
        assert measured == pytest.approx(FIXED_SNR_DB, abs=0.5), utterance


@pytest.mark.slow
@needs_engines
def test_without_pyroomacoustics_the_build_says_once_that_it_has_no_room(monkeypatch, tmp_path, caplog):
    monkeypatch.setitem(sys.modules, "pyroomacoustics", None)  # `import pyroomacoustics` raises ImportError
    with pytest.raises(ImportError, match="pip install pyroomacoustics"):
        variation.import_pyroomacoustics()
    summary = synth.build_corpus(tmp_path / "out", hours=0.01, seed=2)
    warnings_logged = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings_logged) == 1 and "pip install pyroomacoustics" in warnings_logged[0], warnings_logged
    assert "building without reverberation" in warnings_logged[0]
    assert summary["variation"]["reverb"] is False and summary["variation"]["noise"] and summary["variation"]["prosody"]


def _espeak_in_forked_worker(parent_draws: int) -> str:
    """Draw ``parent_draws`` numbers from the C library's rand() here, then synthesise in a forked pool worker."""
    import multiprocessing

    from cpc.speech.corpus import espeak

    libc = espeak._libc()
    for _ in range(parent_draws):
        libc.rand()
    with multiprocessing.get_context("fork").Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(_espeak_digest)


def _espeak_digest() -> str:
    from cpc.speech.corpus import espeak

    _, outputs = espeak.synthesize("en-gb-scotland+f5", ["And there was light."] * 2)
    return hashlib.sha256(b"".join(wave.tobytes() for wave, _ in outputs)).hexdigest()


@needs_engines
def test_espeak_output_does_not_depend_on_the_parent_process_rand_state():
    """Voice variants draw breath noise from rand(); a forked worker inherits the parent's rand() state
    (a C extension in the parent may draw from it), which once made two same-seed builds differ."""
    assert _espeak_in_forked_worker(3) == _espeak_in_forked_worker(11)
