"""Phone (linear, 1-hidden, CTC) and speaker probes: known-answer features, edit distance, bad input, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from cpc.speech import probes
from cpc.speech.features import FeatureError

NUM_PHONES = 5
# Per phone: two partial frequencies (Hz); a "speaker" scales the pitch.
PHONE_PARTIALS = [(300, 900), (500, 1500), (700, 2200), (400, 2800), (900, 1200)]


def write_labelled_corpus(root, *, speakers: int = 3, utterances: int = 5, seconds: float = 2.0, seed: int = 0) -> dict:
    """A tiny labelled corpus in the builder's formats: LibriSpeech-layout FLAC, alignments.txt,
    phones.txt, train/test split files, abx/test.item. Each "phone" is a harmonic tone with its own
    partials (50-150 ms); frame k is labelled by the phone covering (k + 0.5) x 10 ms."""
    from cpc.speech.corpus.formats import ItemRow, write_alignments, write_item, write_phones, write_split

    rng = np.random.default_rng(seed)
    labels, train, test, items = {}, [], [], []
    names = [f"p{index}" for index in range(NUM_PHONES)]
    for speaker_index in range(speakers):
        speaker = str(100 + speaker_index)
        folder = root / speaker / "1"
        folder.mkdir(parents=True, exist_ok=True)
        pitch = 100 + 30 * speaker_index
        for utterance_index in range(utterances):
            utterance = f"{speaker}-1-{utterance_index:04d}"
            pieces, segments, position = [], [], 0
            total = int(seconds * 16000)
            while position < total:
                phone = int(rng.integers(NUM_PHONES))
                length = int(rng.uniform(0.05, 0.15) * 16000)
                t = np.arange(length) / 16000
                low, high = PHONE_PARTIALS[phone]
                tone = (
                    np.sin(2 * np.pi * pitch * t)
                    + 0.6 * np.sin(2 * np.pi * low * t)
                    + 0.4 * np.sin(2 * np.pi * high * t)
                )
                pieces.append(0.2 * tone + 0.01 * rng.standard_normal(length))
                segments.append((position, position + length, phone))
                position += length
            wave = np.concatenate(pieces)[:total].astype(np.float32)
            sf.write(folder / f"{utterance}.flac", wave, 16000)
            centres = (np.arange(total // 160) + 0.5) * 160
            frame_labels = np.zeros(total // 160, dtype=np.int64)
            for start, stop, phone in segments:
                frame_labels[(centres >= start) & (centres < stop)] = phone
            labels[utterance] = frame_labels
            is_test = utterance_index == utterances - 1
            (test if is_test else train).append(utterance)
            if is_test:
                inner = [s for s in segments if s[1] <= total]
                for before, (start, stop, phone), after in zip(inner, inner[1:], inner[2:]):
                    items.append(
                        ItemRow(
                            utterance,
                            start / 16000,
                            stop / 16000,
                            names[phone],
                            names[before[2]],
                            names[after[2]],
                            speaker,
                        )
                    )
    write_alignments(root / "alignments.txt", labels)
    write_phones(root / "phones.txt", names)
    write_split(root / "train_split.txt", train)
    write_split(root / "test_split.txt", test)
    write_item(root / "abx" / "test.item", items)
    return {"labels": labels, "train": train, "test": test, "items": items}


def _encoding_features(
    labels: dict[str, np.ndarray], rng, *, noise: float, informative: bool = True
) -> dict[str, np.ndarray]:
    """Features that one-hot encode each frame's label (plus noise), or pure noise."""
    out = {}
    for utterance, y in labels.items():
        x = noise * rng.standard_normal((len(y), 16)).astype(np.float32)
        if informative:
            x[np.arange(len(y)), y] += 1.0
        out[utterance] = x
    return out


def _random_labels(rng, utterances: int = 40, frames: int = 150) -> dict[str, np.ndarray]:
    return {f"u{i}": rng.integers(NUM_PHONES, size=frames) for i in range(utterances)}


@pytest.mark.slow
def test_phone_probe_on_label_encoding_features_is_perfect_and_on_noise_is_chance():
    rng = np.random.default_rng(0)
    labels = _random_labels(rng)
    train, test = [f"u{i}" for i in range(30)], [f"u{i}" for i in range(30, 40)]
    perfect = probes.phone_probe(
        _encoding_features(labels, rng, noise=0.1), labels, train, test, num_classes=NUM_PHONES
    )
    assert perfect["accuracy"] > 99.0
    assert perfect["train_frames"] == 30 * 150 and perfect["test_frames"] == 10 * 150
    noise = probes.phone_probe(
        _encoding_features(labels, rng, noise=1.0, informative=False), labels, train, test, num_classes=NUM_PHONES
    )
    assert abs(noise["accuracy"] - 100 / NUM_PHONES) < 6.0
    hidden = probes.phone_probe(
        _encoding_features(labels, rng, noise=0.1),
        labels,
        train,
        test,
        num_classes=NUM_PHONES,
        settings=probes.ProbeSettings(hidden_layers=1, hidden_size=32),
    )
    assert hidden["accuracy"] > 99.0 and hidden["hidden_layers"] == 1


def test_phone_probe_trims_end_frames_and_rejects_large_mismatch():
    rng = np.random.default_rng(1)
    labels = _random_labels(rng, utterances=6, frames=60)
    features = _encoding_features(labels, rng, noise=0.1)
    features["u0"] = features["u0"][:-2]  # two frames short: normal at an utterance's end
    result = probes.phone_probe(features, labels, ["u0", "u1", "u2", "u3"], ["u4", "u5"], num_classes=NUM_PHONES)
    assert result["trimmed_frames"] == 2
    features["u1"] = features["u1"][:-5]
    with pytest.raises(FeatureError, match="utterance u1: 55 feature frames but 60 label frames"):
        probes.phone_probe(features, labels, ["u0", "u1"], ["u4"], num_classes=NUM_PHONES)


def test_edit_distance_and_per_hand_values():
    assert probes.edit_distance("kitten", "sitting") == 3
    assert probes.edit_distance([], [1, 2]) == 2
    assert probes.edit_distance([1, 2, 3], []) == 3
    assert probes.edit_distance([1, 2, 3, 4], [1, 3, 4, 5]) == 2  # delete 2, insert 5
    # 1 error over 4 reference phones + 0 over 2 -> 1/6.
    assert probes.phone_error_rate([[1, 2, 3, 4], [5, 6]], [[1, 2, 4, 4], [5, 6]]) == pytest.approx(100 / 6)
    assert probes.collapse([3, 3, 0, 0, 3, 1]) == [3, 0, 3, 1]
    import torch

    # argmax per frame: 2 2 blank 2 1 1 blank -> merge repeats -> 2 blank 2 1 blank -> drop blanks -> 2 2 1
    frames = torch.nn.functional.one_hot(torch.tensor([2, 2, 4, 2, 1, 1, 4]), 5).float().log_softmax(-1)
    assert probes.greedy_decode(frames, 7, blank=4) == [2, 2, 1]
    assert probes.greedy_decode(frames, 3, blank=4) == [2]


@pytest.mark.slow
def test_ctc_probe_recovers_phone_sequences_from_encoding_features():
    rng = np.random.default_rng(2)
    # Phones last 3-8 frames, as in speech, so the collapsed sequence is much shorter than the frames.
    labels = {f"u{i}": np.repeat(rng.integers(NUM_PHONES, size=30), rng.integers(3, 9, size=30)) for i in range(40)}
    features = _encoding_features(labels, rng, noise=0.1)
    # A per-frame linear CTC model can only emit one symbol per run of identical frames (blank or
    # the phone, so it tends to blanks); real features change inside a phone. Mark each phone's
    # first frame so that "phone at the onset, blank elsewhere" is linearly expressible.
    for utterance, y in labels.items():
        features[utterance][np.flatnonzero(np.diff(y, prepend=-1) != 0), NUM_PHONES] += 1.0
    result = probes.ctc_probe(
        features,
        labels,
        [f"u{i}" for i in range(30)],
        [f"u{i}" for i in range(30, 40)],
        num_classes=NUM_PHONES,
        settings=probes.ProbeSettings(epochs=100, learning_rate=5e-2, min_steps=200),
    )
    assert result["per"] < 5.0
    assert result["test_phones"] == sum(len(probes.collapse(labels[f"u{i}"])) for i in range(30, 40))


def test_speaker_probe_on_speaker_encoding_features_and_on_noise():
    rng = np.random.default_rng(3)
    speakers = {f"u{i}": f"s{i % 8}" for i in range(80)}
    centres = {f"s{k}": 3 * rng.standard_normal(16) for k in range(8)}
    informative = {u: (centres[s] + rng.standard_normal((300, 16))).astype(np.float32) for u, s in speakers.items()}
    train, test = [f"u{i}" for i in range(64)], [f"u{i}" for i in range(64, 80)]
    result = probes.speaker_probe(informative, speakers, train, test)
    assert result["accuracy"] == pytest.approx(100.0)
    assert result["num_speakers"] == 8 and result["train_crops"] == 64 * 2 and result["test_crops"] == 16 * 2
    noise = {u: rng.standard_normal((300, 16)).astype(np.float32) for u in speakers}
    assert probes.speaker_probe(noise, speakers, train, test)["accuracy"] < 40.0  # chance 12.5 %, 32 test crops


def _quick_probes(threads=None):
    """The three probes on a small known-answer set, a few steps each: name -> () -> score."""
    rng = np.random.default_rng(4)
    labels = _random_labels(rng, utterances=6, frames=64)
    features = _encoding_features(labels, rng, noise=0.5)
    speakers = {utterance: f"s{index % 2}" for index, utterance in enumerate(labels)}
    train, test = ["u0", "u1", "u2", "u3"], ["u4", "u5"]
    quick = probes.ProbeSettings(epochs=1, min_steps=3, threads=threads)
    return {
        "phone": lambda: probes.phone_probe(features, labels, train, test, num_classes=NUM_PHONES, settings=quick)[
            "accuracy"
        ],
        "ctc": lambda: probes.ctc_probe(features, labels, train, test, num_classes=NUM_PHONES, settings=quick)["per"],
        "speaker": lambda: probes.speaker_probe(features, speakers, train, test, crop_frames=16, settings=quick)[
            "accuracy"
        ],
    }


def test_probes_leave_the_global_rng_alone_and_depend_on_their_seed_only():
    import torch

    for name, run in _quick_probes().items():
        torch.manual_seed(123)
        state = torch.get_rng_state()
        score = run()
        assert torch.equal(torch.get_rng_state(), state), f"the {name} probe changed the global RNG"
        torch.manual_seed(456)
        assert run() == score, name


@pytest.mark.parametrize("threads, inside", [(None, 2), (1, 1)])
def test_probes_keep_the_callers_thread_count_unless_asked(threads, inside):
    import torch
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    seen = set()
    hook = register_optimizer_step_pre_hook(lambda optimizer, args, kwargs: seen.add(torch.get_num_threads()))
    try:
        for name, run in _quick_probes(threads).items():
            seen.clear()
            torch.set_num_threads(2)  # the caller's setting
            run()
            assert seen == {inside}, name
            assert torch.get_num_threads() == 2, name
    finally:
        hook.remove()


def test_pooled_crops_shapes():
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    np.testing.assert_array_equal(probes.pooled_crops(x, 4), [[3, 4], [11, 12]])
    assert probes.pooled_crops(x, 11).shape == (0, 2)


def _cli(argv):
    import cpc.cli

    modules = cpc.cli.COMMAND_MODULES
    cpc.cli.COMMAND_MODULES = ["cpc.speech.evaluate", "cpc.eval.demo"]
    try:
        return cpc.cli.main(argv)
    finally:
        cpc.cli.COMMAND_MODULES = modules


def test_cli_phone_and_speaker_probes_write_json_and_table(tmp_path):
    corpus = tmp_path / "corpus"
    write_labelled_corpus(corpus)
    out = tmp_path / "phone.json"
    assert (
        _cli(
            [
                "probe",
                "phone",
                "--features",
                "logmel",
                "--data",
                str(corpus),
                "--json",
                str(out),
                "--cache",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["features"] == "logmel" and result["task"] == "phone"
    assert result["accuracy"] > 80.0  # tones with distinct partials: easy for log-mel
    assert result["train_utterances"] == 12 and result["test_utterances"] == 3
    assert "| logmel |" in out.with_suffix(".md").read_text()
    out = tmp_path / "speaker.json"
    assert (
        _cli(["probe", "speaker", "--features", "mfcc", "--data", str(corpus), "--json", str(out), "--no-cache"]) == 0
    )
    assert json.loads(out.read_text())["num_speakers"] == 3


def test_cli_reports_split_ids_missing_on_disk(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    write_labelled_corpus(corpus, speakers=2, utterances=3)
    split = tmp_path / "test_split.txt"
    split.write_text("100-1-0002\n999-1-0000\n998-1-0001\n")
    code = _cli(
        [
            "probe",
            "phone",
            "--features",
            "mfcc",
            "--data",
            str(corpus),
            "--test-split",
            str(split),
            "--json",
            str(tmp_path / "x.json"),
            "--no-cache",
        ]
    )
    assert code == 2
    error = capsys.readouterr().err
    assert "998-1-0001" in error and "999-1-0000" in error


def test_cli_bad_checkpoint_is_a_clear_error(tmp_path, capsys):
    import torch

    corpus = tmp_path / "corpus"
    write_labelled_corpus(corpus, speakers=2, utterances=3)
    checkpoint = tmp_path / "old.pt"
    torch.save({"format_version": 0}, checkpoint)
    code = _cli(
        [
            "probe",
            "phone",
            "--features",
            str(checkpoint),
            "--data",
            str(corpus),
            "--json",
            str(tmp_path / "x.json"),
            "--no-cache",
        ]
    )
    assert code == 2
    assert "old.pt has checkpoint format version 0" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_functions_and_cli_default_to_one_thread(tmp_path, monkeypatch):
    import torch
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    from cpc.speech import abx
    from cpc.speech.corpus.formats import load_corpus
    from cpc.speech.evaluate import evaluate_phone

    corpus = tmp_path / "corpus"
    write_labelled_corpus(corpus)  # enough test tokens for ABX pairs
    seen = set()
    hook = register_optimizer_step_pre_hook(lambda optimizer, args, kwargs: seen.add(torch.get_num_threads()))
    try:
        for threads, options, inside in [
            ("default", {}, 1),
            ("None", {"threads": None}, 2),
        ]:  # the demo passes no threads
            seen.clear()
            torch.set_num_threads(2)
            evaluate_phone(
                load_corpus(corpus),
                "mfcc",
                progress=False,
                settings=probes.ProbeSettings(epochs=1, min_steps=3),
                **options,
            )
            assert seen == {inside} and torch.get_num_threads() == 2, threads
    finally:
        hook.remove()
    dtw = abx.dtw_average_cost
    monkeypatch.setattr(abx, "dtw_average_cost", lambda *args: seen.add(torch.get_num_threads()) or dtw(*args))
    command = ["abx", "--features", "logmel", "--data", str(corpus), "--json", str(tmp_path / "abx.json"), "--no-cache"]
    for options, inside in [([], 1), (["--threads", "2"], 2)]:
        seen.clear()
        assert _cli([*command, *options]) == 0
        assert seen == {inside}, options
    assert _cli([*command, "--threads", "0"]) == 2  # one line, no usage dump (see test_eval_cli.py)
