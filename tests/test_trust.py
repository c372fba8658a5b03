"""What a user handed a file, or a bad input, can rely on: checkpoints never run code, one
writer per folder, writes never follow planted links, bad inputs refused where they enter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from cpc.checkpoint import FORMAT_VERSION, CheckpointError
from cpc.cli import main
from cpc.config import load_config, to_container
from cpc.model import build_model
from cpc.resources import sample_corpus


class Payload:
    """Unpickling this creates ``marker``: the stand-in for any code a pickle can run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_checkpoint(path: Path, recipe: str, *, marker: Path | None = None, overrides=()) -> Path:
    """A real checkpoint of ``recipe``'s model (fresh weights); with ``marker``, plus a pickled payload."""
    config = load_config(recipe, list(overrides))
    torch.manual_seed(0)
    state = {
        "format_version": FORMAT_VERSION,
        "config": to_container(config),
        "model": build_model(config).state_dict(),
        "step": 0,
    }
    if marker is not None:
        state["extra"] = Payload(marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


TEXT_SMALL = ["model.encoder.buckets=1024"]


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    """Crafted speech, image and text checkpoints and the marker file their payload would create."""
    folder = tmp_path_factory.mktemp("crafted")
    marker = folder / "MARKER"
    return {
        "marker": marker,
        "speech": write_checkpoint(folder / "speech.pt", "speech/tiny", marker=marker),
        "image": write_checkpoint(folder / "image.pt", "image/fashion_mnist", marker=marker),
        "text": write_checkpoint(folder / "text.pt", "text/books", marker=marker, overrides=TEXT_SMALL),
    }


def _probe_text_data(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "mr.tsv").write_text(
        "".join(f"{i % 2}\tsentence number {i} is {'good' if i % 2 else 'bad'}\n" for i in range(40))
    )
    return folder


def _resume(tmp, checkpoint):
    run = tmp / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(Path(checkpoint).read_bytes())
    return main(
        ["train", "speech/tiny", "--run-dir", str(run), "--resume", "train.progress=false", "data.num_workers=0"]
    )


def _upstream(tmp, checkpoint):
    from cpc.upstream import CPCUpstream

    CPCUpstream(str(checkpoint))


def _api(tmp, checkpoint):
    import cpc

    cpc.load(checkpoint)


def _walkthrough(tmp, checkpoint):
    from cpc.walkthrough import main as walkthrough

    return walkthrough(["--checkpoint", str(checkpoint), "--out", str(tmp / "walk")])


SAMPLE = str(sample_corpus())
ENTRY_POINTS = {  # name -> (modality of the checkpoint it takes, call(tmp, checkpoint))
    "cpc.load": ("speech", _api),
    "s3prl upstream": ("speech", _upstream),
    "cpc train --resume": ("speech", _resume),
    "cpc walkthrough": ("speech", _walkthrough),
    "cpc extract": (
        "speech",
        lambda tmp, c: main(["extract", str(c), "--data", SAMPLE, "--out", str(tmp / "feats"), "--no-progress"]),
    ),
    "cpc export": (
        "speech",
        lambda tmp, c: main(["export", str(c), "--format", "torchscript", "--out", str(tmp / "x.pt")]),
    ),
    "cpc probe phone": (
        "speech",
        lambda tmp, c: main(["probe", "phone", "--features", str(c), "--data", SAMPLE, "--no-cache"]),
    ),
    "cpc probe speaker": (
        "speech",
        lambda tmp, c: main(["probe", "speaker", "--features", str(c), "--data", SAMPLE, "--no-cache"]),
    ),
    "cpc abx": ("speech", lambda tmp, c: main(["abx", "--features", str(c), "--data", SAMPLE, "--no-cache"])),
    "cpc probe phone --architecture": (
        "speech",
        lambda tmp, c: main(
            ["probe", "phone", "--features", "random", "--architecture", str(c), "--data", SAMPLE, "--no-cache"]
        ),
    ),
    "cpc probe image": (
        "image",
        lambda tmp, c: main(["probe", "image", "--features", str(c), "--data", str(tmp / "nowhere")]),
    ),
    "cpc probe text": (
        "text",
        lambda tmp, c: main(["probe", "text", "--features", str(c), "--data", str(_probe_text_data(tmp / "text"))]),
    ),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_a_crafted_checkpoint_runs_nothing(entry, crafted, tmp_path, capsys):
    modality, call = ENTRY_POINTS[entry]
    try:
        code = call(tmp_path, crafted[modality])
    except CheckpointError as error:
        code, message = 2, str(error)
    else:
        message = capsys.readouterr().err
    assert not crafted["marker"].exists(), f"{entry} ran the checkpoint's payload"
    assert code != 0
    assert "refusing" in message and "can run code" in message and ".pt" in message
    assert len(message.strip().splitlines()) == 1, message


def test_writing_anything_but_tensors_and_plain_values_fails_before_writing(tmp_path):
    from cpc.checkpoint import save_checkpoint

    with pytest.raises(TypeError, match=r"state\['config'\]\['when'\] is a pathlib"):
        save_checkpoint(tmp_path / "last.pt", {"config": {"when": Path("x")}})
    assert not (tmp_path / "last.pt").exists()


# ----------------------------------------------------------------------------- modality at the door


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clean")
    return {
        "speech": write_checkpoint(folder / "speech.pt", "speech/tiny"),
        "image": write_checkpoint(folder / "image.pt", "image/fashion_mnist"),
        "text": write_checkpoint(folder / "text.pt", "text/books", overrides=TEXT_SMALL),
    }


WRONG = {"speech": "image", "image": "text", "text": "image"}


def test_cpc_bench_extract_refuses_a_recipe_of_another_modality(capsys):
    assert main(["bench", "extract", "--recipe", "image/fashion_mnist", "--runs", "1", "--warmup", "0"]) != 0
    assert "needs a speech model" in capsys.readouterr().err


@pytest.mark.parametrize("entry", [name for name in ENTRY_POINTS if name not in ("cpc.load", "cpc train --resume")])
def test_a_checkpoint_of_another_modality_is_refused_at_the_door(entry, clean, tmp_path, capsys):
    modality, call = ENTRY_POINTS[entry]
    try:
        code = call(tmp_path, clean[WRONG[modality]])
    except CheckpointError as error:
        code, message = 2, str(error)
    else:
        message = capsys.readouterr().err.strip().splitlines()[-1]
    assert code != 0
    from cpc.checkpoint import MODALITIES

    needed = MODALITIES[{"image": "fashion_mnist"}.get(modality, modality)]
    assert f"needs {needed}" in message and str(clean[WRONG[modality]]) in message, message


# ----------------------------------------------------------------------------- one writer per folder, no stale state

FAST = ["data.window=8000", "data.num_workers=0", "train.valid_every=1000", "train.progress=false", "train.log_every=1"]


@pytest.mark.slow
def test_a_second_training_into_a_busy_folder_is_refused_naming_the_lock_and_its_holder(tmp_path, capsys):
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cpc.cli",
            "train",
            "speech/tiny",
            "--run-dir",
            str(run),
            *FAST,
            "train.max_steps=100000",
            "train.checkpoint_every=2",
        ],
        cwd=Path(__file__).parents[1],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while not (run / "config.yaml").exists() and time.time() < deadline and first.poll() is None:
            time.sleep(0.1)
        assert first.poll() is None, first.communicate()[1]
        code = main(["train", "speech/tiny", "--run-dir", str(run), *FAST, "train.max_steps=2"])
        message = capsys.readouterr().err.strip().splitlines()[-1]
        assert code != 0
        assert ".train.lock" in message and f"process {first.pid}" in message, message
        while not (run / "checkpoints" / "last.pt").exists() and time.time() < deadline:
            time.sleep(0.1)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    # kill -9 released the lock: the run resumes
    assert (
        main(
            [
                "train",
                "speech/tiny",
                "--run-dir",
                str(run),
                "--resume",
                *FAST,
                "train.checkpoint_every=2",
                f"train.max_steps={_step(run) + 1}",
            ]
        )
        == 0
    )


def _step(run: Path) -> int:
    from cpc.checkpoint import load_checkpoint

    return load_checkpoint(run / "checkpoints" / "last.pt")["step"]


def test_a_folder_with_a_run_that_saved_no_checkpoint_is_refused_not_appended_to(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 990, "loss": 1.0}\n')
    (run / "config.yaml").write_text("train: {}\n")
    code = main(["train", "speech/tiny", "--run-dir", str(run), *FAST, "train.max_steps=2"])
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert code != 0
    assert "metrics.jsonl" in message and "no checkpoints/last.pt" in message and f"rm -r {run}" in message, message
    assert (run / "metrics.jsonl").read_text() == '{"step": 990, "loss": 1.0}\n'


# ----------------------------------------------------------------------------- writes that cannot be redirected


def _victim(tmp_path: Path, name: str) -> Path:
    victim = tmp_path / f"victim-{name}"
    victim.write_text("precious\n")
    return victim


@pytest.mark.slow
def test_training_never_writes_through_links_planted_in_its_run_dir(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "speech/tiny", "--run-dir", str(run), *FAST, "train.max_steps=2"]) == 0
    victims = {name: _victim(tmp_path, name) for name in ("metrics.jsonl", "config.yaml")}
    (run / "config.yaml").unlink()
    (run / "config.yaml").symlink_to(victims["config.yaml"])
    assert main(["train", "speech/tiny", "--run-dir", str(run), "--resume", *FAST, "train.max_steps=3"]) == 0
    assert not (run / "config.yaml").is_symlink()  # replaced, not written through
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(victims["metrics.jsonl"])
    assert main(["train", "speech/tiny", "--run-dir", str(run), "--resume", *FAST, "train.max_steps=4"]) != 0
    assert "metrics.jsonl is a symbolic link" in capsys.readouterr().err
    for name, victim in victims.items():
        assert victim.read_text() == "precious\n", name


@pytest.mark.parametrize(
    "name,format",
    [
        (".extract.lock", "npy"),
        ("index.tsv", "npy"),
        ("extract.json", "npy"),
        ("feats.ark", "kaldi"),
        ("feats.scp", "kaldi"),
    ],
)
@pytest.mark.slow
def test_extraction_never_writes_through_a_planted_link(name, format, clean, tmp_path, capsys):
    out = tmp_path / "feats"
    out.mkdir()
    victim = _victim(tmp_path, name)
    (out / name).symlink_to(victim)
    main(["extract", str(clean["speech"]), "--data", SAMPLE, "--out", str(out), "--format", format, "--no-progress"])
    assert victim.read_text() == "precious\n"


def test_export_refuses_to_overwrite_its_checkpoint(clean, tmp_path, capsys):
    checkpoint = tmp_path / "last.pt"
    checkpoint.write_bytes(clean["speech"].read_bytes())
    before = checkpoint.read_bytes()
    code = main(["export", str(checkpoint), "--format", "torchscript", "--out", str(checkpoint)])
    assert code != 0 and "is the input" in capsys.readouterr().err
    assert checkpoint.read_bytes() == before


def test_a_probe_json_that_names_its_checkpoint_is_refused(clean, tmp_path, capsys):
    checkpoint = tmp_path / "last.pt"
    checkpoint.write_bytes(clean["speech"].read_bytes())
    before = checkpoint.read_bytes()
    code = main(
        ["probe", "phone", "--features", str(checkpoint), "--data", SAMPLE, "--no-cache", "--json", str(checkpoint)]
    )
    assert code != 0 and "is the input" in capsys.readouterr().err
    assert checkpoint.read_bytes() == before


# ----------------------------------------------------------------------------- inputs checked where they enter


def _wav_corpus(folder: Path, count: int = 3, seconds: float = 0.5) -> Path:
    import numpy as np
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        sf.write(
            folder / f"100-1-{index:04d}.wav",
            (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32),
            16000,
            subtype="FLOAT",
        )
    return folder


def test_non_finite_samples_skip_the_utterance_named_and_counted_never_nan_features(clean, tmp_path):
    import json

    import numpy as np
    import soundfile as sf

    corpus = _wav_corpus(tmp_path / "corpus")
    wave, rate = sf.read(corpus / "100-1-0001.wav", dtype="float32")
    wave[100:110] = np.nan
    sf.write(corpus / "100-1-0001.wav", wave, rate, subtype="FLOAT")
    out = tmp_path / "out"
    assert main(["extract", str(clean["speech"]), "--data", str(corpus), "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "extract.json").read_text())
    assert summary["counts"]["unreadable"] == 1 and summary["unreadable_files"] == [str(corpus / "100-1-0001.wav")]
    assert sorted(path.name for path in out.glob("*.npy")) == ["100-1-0000.npy", "100-1-0002.npy"]


def test_an_extraction_rerun_recomputes_utterances_whose_audio_changed(clean, tmp_path):
    import os

    import numpy as np
    import soundfile as sf

    corpus = _wav_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    command = ["extract", str(clean["speech"]), "--data", str(corpus), "--out", str(out), "--no-progress"]
    assert main(command) == 0
    longer = (0.1 * np.random.default_rng(1).standard_normal(48000)).astype(np.float32)  # now 3 s
    sf.write(corpus / "100-1-0001.wav", longer, 16000, subtype="FLOAT")
    os.utime(corpus / "100-1-0001.wav", ns=(1, 1))
    assert main(command) == 0
    assert (
        main(
            ["extract", str(clean["speech"]), "--data", str(corpus), "--out", str(tmp_path / "fresh"), "--no-progress"]
        )
        == 0
    )
    for name in ("100-1-0000.npy", "100-1-0001.npy"):
        np.testing.assert_allclose(np.load(out / name), np.load(tmp_path / "fresh" / name), atol=1e-5, rtol=0)
    rows = [line.split("\t") for line in (out / "index.tsv").read_text().splitlines()[1:]]
    assert [row[0] for row in rows] == ["100-1-0000", "100-1-0001", "100-1-0002"]  # no duplicate row
    assert int({row[0]: row[1] for row in rows}["100-1-0001"]) == len(np.load(tmp_path / "fresh" / "100-1-0001.npy"))


def test_a_dangling_link_in_the_data_is_counted_as_unreadable(tmp_path):
    from cpc.speech.audio import list_audio

    corpus = _wav_corpus(tmp_path / "corpus")
    (corpus / "100-1-0009.wav").symlink_to(tmp_path / "gone.wav")
    listing = list_audio(corpus)
    assert len(listing.files) == 3 and listing.unreadable == [str(corpus / "100-1-0009.wav")]


def test_one_audio_file_is_a_corpus_of_one(tmp_path):
    from cpc.speech.audio import list_audio

    corpus = _wav_corpus(tmp_path / "corpus", count=1)
    listing = list_audio(corpus / "100-1-0000.wav")
    assert [Path(file.path).name for file in listing.files] == ["100-1-0000.wav"]


@pytest.mark.parametrize(
    "text,words",
    [
        ("", "is empty"),
        ("# only a comment\n", "is empty"),
        ("- a\n- b\n", "top level is a list"),
        ("just a string\n", "top level is a str"),
    ],
)
def test_empty_and_non_mapping_recipes_are_refused_at_load(text, words, tmp_path):
    from cpc.config import ConfigError

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    with pytest.raises(ConfigError, match=words):
        load_config(recipe)


@pytest.mark.parametrize(
    "override,words",
    [
        ("data.patch_stride=0", "data.patch_stride"),
        ("data.patch_size=40", "data.patch_size=40"),
        ("data.patch_stride=5", "data.patch_stride=5"),
    ],
)
def test_impossible_patch_geometry_fails_at_load_naming_the_keys(override, words):
    from cpc.config import ConfigError

    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        load_config("image/fashion_mnist", [override])


@pytest.mark.parametrize(
    "waveforms,words",
    [
        (torch.zeros(1, 100), "at least"),
        (torch.zeros(1, 0), "at least"),
        (torch.zeros(1, 16000, dtype=torch.int16), "int16"),
    ],
)
def test_extract_features_refuses_short_and_non_float_audio(waveforms, words):
    model = build_model(load_config("speech/tiny")).eval()
    with pytest.raises(ValueError, match=words) as caught:
        model.extract_features(waveforms)
    assert "Expected" not in str(caught.value)
    if words == "at least":
        assert f"{model.minimum_samples} samples" in str(caught.value)
        assert model.output_lengths(torch.tensor([model.minimum_samples - 1, model.minimum_samples])).tolist() == [0, 1]


@pytest.mark.parametrize(
    "rows,options,words",
    [
        (["1\tgood film", "0\tbad film"] * 20 + ["1\t   "], [], "skipped 1 of 41 examples with an empty sentence"),
        (["1\tgood film"] * 40, [], "one class ('1': 40)"),
        (["1\tgood film", "0\tbad film"] * 20, ["--folds", "0"], "--folds 0"),
        (["1\tgood film"] * 30 + ["0\tbad film"] * 4, [], "'0' has 4 examples"),
    ],
)
@pytest.mark.slow
def test_a_text_probe_set_the_cross_validation_cannot_split_is_refused_naming_why(
    rows, options, words, tmp_path, capsys, caplog
):
    (tmp_path / "mr.tsv").write_text("\n".join(rows) + "\n")
    code = main(["probe", "text", "--features", "bow", "--data", str(tmp_path), *options])
    said = capsys.readouterr().err + caplog.text
    assert words in said, said
    if "skipped" in words:
        assert code == 0
    else:
        assert code != 0 and "Traceback" not in said


def test_a_failed_write_names_the_file(tmp_path, monkeypatch):
    import errno

    from cpc.safe_io import write_atomic

    def full(descriptor):  # a full disk can surface at fsync
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="cannot write .*config.yaml: No space left"):
        write_atomic(tmp_path / "config.yaml", "x" * 10)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []  # no 0-byte file left


@pytest.mark.parametrize("kind", ["image", "text"])
def test_image_and_text_probe_json_that_names_the_checkpoint_is_refused(kind, clean, tmp_path, capsys):
    checkpoint = tmp_path / "last.pt"
    checkpoint.write_bytes(clean[kind].read_bytes())
    before = checkpoint.read_bytes()
    data = _probe_text_data(tmp_path / "text") if kind == "text" else tmp_path / "nowhere"
    code = main(["probe", kind, "--features", str(checkpoint), "--data", str(data), "--json", str(checkpoint)])
    assert code != 0 and "is the input" in capsys.readouterr().err
    assert checkpoint.read_bytes() == before
