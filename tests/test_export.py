"""Exported feature extractors give the features of PyTorch, at lengths and batch sizes not seen at export.

TorchScript must match ``extract_features`` exactly; ONNX (run by onnxruntime) within
ONNX_ATOL. Small models with the tiny recipe's architecture features (channel norm, bias-free
first convolution) and with no norm, biases and norm affine moved off their initial values.
"""

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import cpc
import cpc.cli
from cpc.checkpoint import save_checkpoint
from cpc.config import load_config, to_container
from cpc.export import export, export_checkpoint

ONNX_ATOL = 1e-4
LENGTHS = [(1, 16000), (3, 4567), (2, 1601), (1, 159)]  # (B, S); the export traced (2, 16000); 159 = one frame
SMALL_STACK = (
    "["
    + ",".join(
        f"{{channels: 24, kernel_size: {k}, stride: {s}, padding: {p}, bias: {str(i > 0).lower()}}}"
        for i, (k, s, p) in enumerate([(10, 5, 3), (8, 4, 2), (4, 2, 1), (4, 2, 1), (4, 2, 1)])
    )
    + "]"
)


def small_config(norm: str, context: str = "gru"):
    return load_config(
        "speech/tiny",
        [
            f"model.encoder.layers={SMALL_STACK}",
            f"model.encoder.norm={norm}",
            f"model.context.name={context}",
            "model.context.hidden_size=16",
        ],
    )


def small_model(norm: str, context: str = "gru") -> cpc.CPC:
    torch.manual_seed(0)
    model = cpc.build_model(small_config(norm, context)).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 1:  # biases, norm affine
                parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))
    return model


def reference(model, waveforms, layer):
    with torch.no_grad():
        return model.extract_features(waveforms, layer=layer)[0]


def inputs():
    generator = torch.Generator().manual_seed(2)
    return [0.1 * torch.randn(shape, generator=generator) for shape in LENGTHS]


@pytest.mark.parametrize("norm, context", [("channel", "gru"), ("none", "gru"), ("channel", "lstm")])
@pytest.mark.parametrize("layer", ["context", "encoder"])
def test_torchscript_is_exact(tmp_path, norm, context, layer):
    model = small_model(norm, context)
    loaded = torch.jit.load(str(export(model, tmp_path / "features.pt", "torchscript", layer)))
    for waveforms in inputs():
        with torch.no_grad():
            assert torch.equal(loaded(waveforms), reference(model, waveforms, layer)), tuple(waveforms.shape)


@pytest.mark.parametrize("norm, context", [("channel", "gru"), ("none", "gru"), ("channel", "lstm")])
@pytest.mark.parametrize("layer", ["context", "encoder"])
def test_onnx_matches_within_tolerance_at_any_length(tmp_path, norm, context, layer):
    model = small_model(norm, context)
    path = export(model, tmp_path / "features.onnx", "onnx", layer)
    graph = onnx.load(str(path)).graph
    assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim] == [
        "batch",
        "samples",
    ]  # not the example's 2 x 16000
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for waveforms in inputs():
        (features,) = session.run(["features"], {"waveforms": waveforms.numpy()})
        expected = reference(model, waveforms, layer).numpy()
        assert features.shape == expected.shape
        np.testing.assert_allclose(features, expected, rtol=0, atol=ONNX_ATOL)


@pytest.fixture
def checkpoint(tmp_path):
    config = small_config("channel")
    model = small_model("channel")
    path = tmp_path / "run" / "last.pt"
    save_checkpoint(path, {"config": to_container(config), "model": model.state_dict(), "step": 0})
    return path, model


def run_cli(argv, monkeypatch):
    if "cpc.export" not in cpc.cli.COMMAND_MODULES:
        monkeypatch.setattr(cpc.cli, "COMMAND_MODULES", cpc.cli.COMMAND_MODULES + ["cpc.export"])
    return cpc.cli.main(argv)


@pytest.mark.parametrize("format", ["torchscript", "onnx"])
def test_cli_round_trip(checkpoint, tmp_path, monkeypatch, capsys, format):
    path, model = checkpoint
    out = tmp_path / "exported" / f"encoder.{format}"
    assert run_cli(["export", str(path), "--format", format, "--out", str(out), "--layer", "encoder"], monkeypatch) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    waveforms = 0.1 * torch.randn(2, 3333)
    if format == "torchscript":
        with torch.no_grad():
            features = torch.jit.load(str(out))(waveforms).numpy()
    else:
        (features,) = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
            None, {"waveforms": waveforms.numpy()}
        )
    np.testing.assert_allclose(features, reference(model, waveforms, "encoder").numpy(), rtol=0, atol=ONNX_ATOL)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["missing.pt", "--format", "onnx", "--out", "{tmp}/x.onnx"], r"checkpoint missing.pt does not exist"),
        (
            ["{checkpoint}", "--format", "tflite", "--out", "{tmp}/x"],
            r"format='tflite': expected one of torchscript, onnx",
        ),
        (["{checkpoint}", "--format", "onnx", "--out", "{tmp}"], r"--out .* is a directory"),
        (["{checkpoint}", "--format", "onnx", "--out", "{tmp}/x.onnx", "--layer", "predictor"], r"layer='predictor'"),
    ],
    ids=["missing-checkpoint", "unknown-format", "out-is-a-directory", "unknown-layer"],
)
def test_cli_errors_are_one_line(checkpoint, tmp_path, monkeypatch, capsys, arguments, message):
    path, _ = checkpoint
    argv = ["export"] + [a.format(tmp=tmp_path, checkpoint=path) for a in arguments]
    assert run_cli(argv, monkeypatch) == 2
    error = capsys.readouterr().err
    assert error.startswith("cpc export: error: ") and error.count("\n") == 1, error
    assert __import__("re").search(message, error), error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing written


def test_python_errors():
    with pytest.raises(FileNotFoundError):
        export_checkpoint("missing.pt", "x.onnx", "onnx")
    with pytest.raises(ValueError, match="format="):
        export(small_model("none"), "x.tflite", "tflite")
