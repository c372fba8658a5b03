"""CPC_audio checkpoints imported into cpc give CPC_audio's own features.

The fixtures (tests/fixtures/cpc_audio, written by CPC_audio's code at b98a1bd with
make_fixtures.py there) hold small models in every supported configuration, in both of its
file formats, with the encoder output z and the context c that CPC_audio's ``CPCModel.forward``
gave on committed sample-corpus audio; one model was trained by its own train.py, with its
criterion's scores on one batch and the negatives it drew.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import cpc
import cpc.cli
from cpc.infonce import info_nce, score_candidates
from cpc.speech.cpc_audio import CPCAudioImportError, import_cpc_audio, save_imported

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "cpc_audio"
INPUTS = json.loads((FIXTURES / "inputs.json").read_text())
TOLERANCE = 1e-5  # max abs, fp32

_spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
make_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(
    make_fixtures
)  # its CPC_audio imports are inside functions: only seeded_fill and the tables are used

FORMATS = {"hub": "hub.pt", "training": "checkpoint_0.pt"}


def read(spec) -> tuple[torch.Tensor, torch.Tensor]:
    """[[file, start, end], ...] -> zero-padded waveforms (B, S), lengths (B,): what CPC_audio read."""
    waves = [sf.read(REPO / "data" / "sample" / name, dtype="float32")[0][start:end] for name, start, end in spec]
    batch = torch.zeros(len(waves), max(len(wave) for wave in waves))
    for row, wave in enumerate(waves):
        batch[row, : len(wave)] = torch.from_numpy(wave)
    return batch, torch.tensor([len(wave) for wave in waves])


def features(model, waveforms, lengths=None):
    with torch.inference_mode():
        z, _ = model.extract_features(waveforms, lengths, layer="encoder")
        c, _ = model.extract_features(waveforms, lengths, layer="context")
    return z, c


def max_abs(a, b) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


def assert_same_as_cpc_audio(model, outputs: dict, inputs=("single", "batch")) -> None:
    for name in inputs:
        waveforms, _ = read(INPUTS[name])
        z, c = features(model, waveforms)  # no lengths: CPC_audio reads the zero padding as signal
        assert max_abs(z, outputs[f"{name}_z"]) <= TOLERANCE, name
        assert max_abs(c, outputs[f"{name}_c"]) <= TOLERANCE, name


# ----------------------------------------------------------------------------- one test per configuration


@pytest.mark.parametrize("file_format", FORMATS)
@pytest.mark.parametrize("name", list(make_fixtures.CONFIGS))
def test_features_equal_cpc_audio(name, file_format):
    model = import_cpc_audio(FIXTURES / name / FORMATS[file_format])
    assert model.source["format"] == f"cpc_audio/{file_format}"
    assert_same_as_cpc_audio(model, torch.load(FIXTURES / name / "outputs.pt"))


def _materialise(name: str, folder: Path) -> Path:
    """The wide fixtures' CPC_audio files, rebuilt from their seed (too large to commit): hub.pt,
    checkpoint_0.pt and checkpoint_args.json in ``folder``."""
    spec = json.loads((FIXTURES / name / "seeded.json").read_text())
    shapes = {key: torch.empty(shape) for key, shape in spec["keys"].items()}
    state = make_fixtures.seeded_fill(shapes, spec["seed"])
    for key, total in spec["sums"].items():  # the same tensors CPC_audio ran with
        assert abs(float(state[key].double().sum()) - total) <= 1e-6 * max(1.0, abs(total)), key
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"config": spec["config"], "weights": state}, folder / "hub.pt")
    torch.save({"gEncoder": state, "cpcCriterion": {}, "optimizer": {}, "best": None}, folder / "checkpoint_0.pt")
    (folder / "checkpoint_args.json").write_text(json.dumps(spec["config"]))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("name", list(make_fixtures.SEEDED))
def test_wide_models_equal_cpc_audio(name, tmp_path):
    folder = _materialise(name, tmp_path / name)
    outputs = torch.load(FIXTURES / name / "outputs.pt")
    for file_name in FORMATS.values():
        assert_same_as_cpc_audio(import_cpc_audio(folder / file_name), outputs, inputs=("single",))


def test_model_trained_by_cpc_audio_equals_it():
    model = import_cpc_audio(FIXTURES / "trained" / "checkpoint_0.pt")
    assert model.source["predictors"] == "imported"
    assert_same_as_cpc_audio(model, torch.load(FIXTURES / "trained" / "outputs.pt"))


@pytest.mark.parametrize("name", ["batchnorm_gru", "instancenorm_lstm3", "layernorm_gru2_reverse"])
def test_padded_batch_with_lengths_equals_each_sequence_alone(name):
    """CPC_audio has no lengths (the padded row above reads zeros as audio); with lengths, each row
    equals that sequence alone, and the longest row equals CPC_audio's."""
    model = import_cpc_audio(FIXTURES / name / "hub.pt")
    outputs = torch.load(FIXTURES / name / "outputs.pt")
    waveforms, lengths = read(INPUTS["batch"])
    z, c = features(model, waveforms, lengths)
    frames = model.output_lengths(lengths)
    assert max_abs(z[0], outputs["batch_z"][0]) <= TOLERANCE and max_abs(c[0], outputs["batch_c"][0]) <= TOLERANCE
    for row in range(len(waveforms)):
        alone_z, alone_c = features(model, waveforms[row : row + 1, : int(lengths[row])])
        assert (
            max_abs(z[row, : frames[row]], alone_z[0]) <= TOLERANCE
            and max_abs(c[row, : frames[row]], alone_c[0]) <= TOLERANCE
        )


# ----------------------------------------------------------------------------- the predictors


def test_scores_equal_cpc_audio_criterion_with_its_negatives():
    """On one batch with the negatives CPC_audio's criterion drew: our predictors' scores (score=mean)
    and InfoNCE per step equal its criterion's."""
    model = import_cpc_audio(FIXTURES / "trained" / "checkpoint_0.pt")
    recorded = torch.load(FIXTURES / "trained" / "scores.pt")
    assert model.config["loss"]["score"] == "mean"
    waveforms, _ = read(INPUTS["batch"])
    z, c = features(model, waveforms)  # (B, T, C), (B, T, H)
    batch_size, num_frames, channels = z.shape
    steps = model.predictors.prediction_steps
    window = num_frames - steps  # CPC_audio predicts from the first T - K frames only
    negatives = recorded["negatives"].long().permute(0, 2, 1)  # (B, W, N) flat indices into B*T
    t = torch.arange(window)[None, :, None]
    positives = (
        torch.arange(batch_size)[:, None, None] * num_frames + t + torch.arange(1, steps + 1)[None, None, :]
    )  # (B, W, K)
    candidates = torch.cat(
        [positives[..., None], negatives[:, :, None, :].expand(-1, -1, steps, -1)], dim=-1
    )  # (B, W, K, 1 + N)
    with torch.no_grad():
        predictions = model.predictors(c[:, :window])  # (B, W, K, C)
        padded = torch.cat(
            [predictions, predictions.new_zeros(batch_size, num_frames - window, steps, channels)], dim=1
        )
        scores = score_candidates(
            padded, z, torch.cat([candidates, candidates[:, :1].expand(-1, num_frames - window, -1, -1)], dim=1)
        )
        scores = scores[:, :window] / channels  # (B, W, K, 1 + N)
    theirs = recorded["scores"].permute(1, 3, 0, 2)  # (K, B, 1 + N, W) -> (B, W, K, 1 + N)
    assert max_abs(scores, theirs) <= TOLERANCE
    out = info_nce(scores, torch.ones(batch_size, window, steps, dtype=torch.bool))
    assert max_abs(out["loss_per_step"], recorded["loss_per_step"]) <= TOLERANCE
    # Its accuracy is argmax == 0, so a tie counts as correct (its negatives may be the positive
    # itself); ours is strict. The same scores give its number by its rule:
    assert max_abs((scores.argmax(-1) == 0).float().mean(dim=(0, 1)), recorded["accuracy_per_step"]) <= TOLERANCE


def test_criterion_score_mean_divides_by_channels():
    from cpc.config import InfoNCEConfig
    from cpc.objectives import build_infonce_criterion

    generator = lambda: torch.Generator().manual_seed(0)
    predictions, latents, lengths = torch.randn(2, 20, 3, 8), torch.randn(2, 20, 8), torch.tensor([20, 15])
    dot = build_infonce_criterion(InfoNCEConfig(num_negatives=5))
    mean = build_infonce_criterion(InfoNCEConfig(num_negatives=5, score="mean"))
    assert (
        max_abs(
            mean(predictions, latents, lengths, generator())["loss"],
            dot(predictions / 8, latents, lengths, generator())["loss"],
        )
        <= 1e-6
    )


# ----------------------------------------------------------------------------- refusals


def _hub_with(tmp_path, **changes) -> Path:
    state = torch.load(FIXTURES / "layernorm_lstm" / "hub.pt", weights_only=True)
    state["config"].update(changes)
    path = tmp_path / "changed.pt"
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"encoder_type": "mfcc"}, "CPC_audio config encoder_type='mfcc' is not supported"),
        ({"encoder_type": "lfb"}, "CPC_audio config encoder_type='lfb' is not supported"),
        ({"arMode": "transformer"}, "CPC_audio config arMode='transformer' is not supported"),
        ({"arMode": "no_ar"}, "CPC_audio config arMode='no_ar' is not supported"),
        ({"arMode": "RNN"}, "CPC_audio config arMode='RNN' is not supported"),
        ({"normMode": "groupNorm"}, "CPC_audio config normMode='groupNorm' is not supported"),
        ({"speakerEmbedding": 8}, "CPC_audio config speakerEmbedding=8 is not supported"),
    ],
)
def test_unsupported_configs_are_one_line(tmp_path, capsys, changes, message):
    path = _hub_with(tmp_path, **changes)
    with pytest.raises(CPCAudioImportError, match=message):
        import_cpc_audio(path)
    assert cpc.cli.main(["import", "cpc_audio", str(path), "--out", str(tmp_path / "out.pt")]) == 2
    error = capsys.readouterr().err
    assert (
        error.startswith(f"cpc import: error: {message}")
        and len(error.strip().splitlines()) == 1
        and "Traceback" not in error
    )
    assert not (tmp_path / "out.pt").exists()


class _Code:  # unpickling this would run code: weights_only refuses it
    pass


@pytest.mark.parametrize("what", ["pickled code", "unknown key", "missing key", "no arguments", "not cpc_audio"])
def test_bad_files_are_one_line(tmp_path, capsys, what):
    path = tmp_path / "checkpoint_3.pt"
    if what == "pickled code":
        torch.save({"config": {}, "weights": {}, "extra": _Code()}, path)
        message = "cannot be read with torch.load(weights_only=True)"
    elif what == "unknown key":
        state = torch.load(FIXTURES / "layernorm_lstm" / "hub.pt", weights_only=True)
        state["weights"]["gEncoder.conv5.weight"] = torch.zeros(1)
        torch.save(state, path)
        message = "CPC_audio state dict key 'gEncoder.conv5.weight'"
    elif what == "missing key":
        state = torch.load(FIXTURES / "layernorm_lstm" / "hub.pt", weights_only=True)
        del state["weights"]["gEncoder.batchNorm2.bias"]
        torch.save(state, path)
        message = "CPC_audio state dict has no 'gEncoder.batchNorm2.bias', which normMode needs"
    elif what == "no arguments":
        torch.save(torch.load(FIXTURES / "layernorm_lstm" / "checkpoint_0.pt", weights_only=True), path)
        message = "needs its arguments in"
    else:
        torch.save({"model": {}}, path)
        message = "not a CPC_audio checkpoint"
    assert cpc.cli.main(["import", "cpc_audio", str(path), "--out", str(tmp_path / "out.pt")]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1 and "Traceback" not in error


# ----------------------------------------------------------------------------- downstream, on an imported checkpoint


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The CPC_audio-trained model imported through the command line."""
    out = tmp_path_factory.mktemp("imported") / "trained.pt"
    assert cpc.cli.main(["import", "cpc_audio", str(FIXTURES / "trained" / "checkpoint_0.pt"), "--out", str(out)]) == 0
    return out


def test_imported_checkpoint_loads_and_records_its_source(imported, capsys):
    from cpc.checkpoint import load_checkpoint

    state = load_checkpoint(imported)
    assert state["source"]["format"] == "cpc_audio/training" and state["source"]["predictors"] == "imported"
    assert json.loads(state["source"]["config"])["rnnMode"] == "linear"
    assert pickle.loads(pickle.dumps(state["config"])) == state["config"]  # plain containers
    model = cpc.load(imported)
    assert_same_as_cpc_audio(model, torch.load(FIXTURES / "trained" / "outputs.pt"))


def test_cli_says_what_it_imported(tmp_path, capsys):
    assert (
        cpc.cli.main(
            ["import", "cpc_audio", str(FIXTURES / "layernorm_lstm" / "hub.pt"), "--out", str(tmp_path / "a.pt")]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "encoder and context only; rnnMode='transformer' has no exact counterpart" in out
    assert "streaming look-ahead: 152 samples (9.5 ms)" in out
    assert (
        cpc.cli.main(
            [
                "import",
                "cpc_audio",
                str(FIXTURES / "layernorm_gru2_reverse" / "hub.pt"),
                "--out",
                str(tmp_path / "b.pt"),
            ]
        )
        == 0
    )
    assert "not causal" in capsys.readouterr().out


@pytest.mark.parametrize("format", ["npy", "kaldi"])
def test_extract(imported, tmp_path, format):
    from test_extract import READERS

    corpus = tmp_path / "corpus" / "102" / "1"
    corpus.mkdir(parents=True)
    for name in ("102-1-0002.flac", "102-1-0008.flac"):
        (corpus / name).write_bytes((REPO / "data" / "sample" / "102" / "1" / name).read_bytes())
    out = tmp_path / "out"
    assert (
        cpc.cli.main(
            [
                "extract",
                str(imported),
                "--data",
                str(tmp_path / "corpus"),
                "--out",
                str(out),
                "--format",
                format,
                "--no-progress",
            ]
        )
        == 0
    )
    written = READERS[format](out)
    model = cpc.load(imported)
    for name in ("102-1-0002", "102-1-0008"):
        wave = torch.from_numpy(sf.read(corpus / f"{name}.flac", dtype="float32")[0])[None]
        _, c = features(model, wave)
        np.testing.assert_allclose(written[name], c[0].numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["imported", "batchnorm_gru", "id_gru4"])
def test_streaming_equals_offline(imported, name):
    model = cpc.load(imported) if name == "imported" else import_cpc_audio(FIXTURES / name / "hub.pt")
    waveforms, _ = read(INPUTS["single"])
    stream = model.stream()
    assert stream.lookahead == 152  # CPC_audio pads (3, 2, 1, 1, 1) like the paper recipe: 9.5 ms past each frame
    pieces = [stream(chunk) for chunk in waveforms[0].split(777)] + [stream.flush()]
    _, c = features(model, waveforms)
    assert max_abs(torch.cat(pieces), c[0]) <= TOLERANCE


def test_non_causal_models_refuse_to_stream():
    for name in ("layernorm_gru2_reverse", "instancenorm_lstm3"):
        with pytest.raises(ValueError, match="cannot stream"):
            import_cpc_audio(FIXTURES / name / "hub.pt").stream()
    reverse = import_cpc_audio(FIXTURES / "layernorm_gru2_reverse" / "hub.pt")
    reverse.stream(layer="encoder")  # the encoder alone is causal


@pytest.mark.filterwarnings(
    "ignore:ONNX export mode is set to TrainingMode.EVAL"
)  # instance norm always uses the input's statistics
@pytest.mark.parametrize("name", ["trained", "layernorm_gru2_reverse", "instancenorm_lstm3"])
def test_onnx_export_runs_in_onnxruntime(tmp_path, name):
    onnxruntime = pytest.importorskip("onnxruntime")
    source = FIXTURES / name / ("checkpoint_0.pt" if name == "trained" else "hub.pt")
    save_imported(source, tmp_path / "model.pt")
    out = tmp_path / "model.onnx"
    assert cpc.cli.main(["export", str(tmp_path / "model.pt"), "--format", "onnx", "--out", str(out)]) == 0
    waveforms, _ = read(INPUTS["single"])
    (got,) = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        None, {"waveforms": waveforms.numpy()}
    )
    assert np.abs(got - torch.load(FIXTURES / name / "outputs.pt")["single_c"].numpy()).max() <= 1e-4


def test_abx_and_phone_probe_take_the_imported_checkpoint(imported, tmp_path):
    from test_probes import _cli, write_labelled_corpus

    corpus = tmp_path / "corpus"
    write_labelled_corpus(corpus, speakers=2, utterances=3, seconds=1.5)
    for command in (["abx"], ["probe", "phone"]):
        out = tmp_path / f"{command[-1]}.json"
        assert (
            _cli([*command, "--features", str(imported), "--data", str(corpus), "--json", str(out), "--no-cache"]) == 0
        )
        result = json.loads(out.read_text())
        assert result and all(np.isfinite(v) for v in result.values() if isinstance(v, float))


def test_training_continues_from_an_imported_model(imported, corpus_dir, tmp_path):
    """``train.init_from``: the imported model, weights and all, is what training starts from."""
    from cpc.checkpoint import load_checkpoint
    from cpc.config import load_config
    from cpc.train import train

    overrides = {
        "train.init_from": imported,
        "data.root": corpus_dir,
        "data.window": 4096,
        "data.num_workers": 0,
        "data.valid_fraction": 0,
        "train.batch_size": 2,
        "train.max_steps": 2,
        "train.checkpoint_every": 2,
        "train.progress": False,
        "train.threads": 1,
        "optim.lr": 0.0,
        "optim.weight_decay": 0.0,
    }
    train(load_config("speech/tiny", [f"{key}={value}" for key, value in overrides.items()]), tmp_path / "run")
    trained, source = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt"), load_checkpoint(imported)
    assert trained["config"]["model"] == source["config"]["model"]  # the imported architecture, score=mean included
    for key, value in source["model"].items():
        assert torch.equal(trained["model"][key], value), key  # learning rate 0: still the imported weights


def test_s3prl_upstream_rows_equal_each_wav_alone_for_a_reversed_model():
    from cpc.upstream import CPCUpstream

    upstream = CPCUpstream(model=import_cpc_audio(FIXTURES / "layernorm_gru2_reverse" / "hub.pt")).eval()
    waveforms, lengths = read(INPUTS["batch"])
    wavs = [waveforms[row, : int(length)] for row, length in enumerate(lengths)]
    with torch.no_grad():
        out = upstream(wavs)
        for row, wav in enumerate(wavs):
            alone = upstream([wav])["last_hidden_state"][0]
            assert max_abs(out["last_hidden_state"][row, : len(alone)], alone) <= TOLERANCE
