"""``cpc export``: the feature extractor as a TorchScript or ONNX file.

    cpc export CHECKPOINT --format torchscript|onnx --out FILE [--layer context|encoder]

Shape legend: B batch, S samples (16 kHz), T frames, D = H (context) or C (encoder).

The exported graph is :class:`FeatureExtractor`: waveforms (B, S) float32 -> features
(B, T, D), with B and S dynamic (T = ``model.output_lengths(S)``). It has no lengths input:
every sequence of a batch is taken at full length, as ``model.extract_features(waveforms)``
without lengths. For sequences of different lengths, export nothing new: run them one at a
time (B = 1), or pad and keep each sequence's first ``ready_frames`` frames (those that read no
padding, see cpc.speech.streaming); the last frames of a padded sequence differ from
``extract_features(..., lengths)``, which re-pads after every layer. S must give at least one
frame (159 samples for the shipped recipes; ``minimum_samples`` of the TorchScript module, and
printed by ``cpc export``); a shorter input fails inside a convolution.

Exporters, as of torch 2.14.1 (measured; ``tests/test_export.py`` checks parity):

* TorchScript: ``torch.jit.script`` of the wrapper; the same kernels as eager PyTorch, so the
  features are bit for bit those of ``extract_features``. ``torch.jit`` is deprecated in favour of
  ``torch.export`` but still what loads without Python (libtorch) and with ``torch.jit.load``.
* ONNX: the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``, opset 17) with
  dynamic axes; nn.GRU/LSTM become ONNX GRU/LSTM ops. The torch.export-based exporter
  (``dynamo=True``, onnxscript 0.7.2) fails on this model once the length axis is dynamic: decomposing
  ``aten.gru`` after the convolutions raises a shape mismatch (a static length exports, but then
  only that length runs). onnxruntime 1.32 (CPU) matches PyTorch within 3e-6 absolute on the
  shipped recipes (measured, 159 to 48000 samples, features of size ~1); the tests assert 1e-4.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from cpc.model import CPC, LAYERS
from cpc.safe_io import create_temporary, refuse_input_as_output
from cpc.speech.audio import SAMPLE_RATE
from cpc.speech.encoder import conv_frames, conv_waveforms

__all__ = ["FORMATS", "FeatureExtractor", "export", "export_checkpoint"]

FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 17
EXAMPLE_SHAPE = (2, SAMPLE_RATE)  # (B, S): one second, for ONNX; any B and S run afterwards


class FeatureExtractor(nn.Module):
    """waveforms (B, S) float -> features (B, T, D): ``model.extract_features(waveforms, layer=layer)[0]``
    for full-length inputs, in a form TorchScript and the ONNX exporter accept (no lengths, no
    masking: each layer is conv -> norm -> ReLU, as in ``ConvEncoder.forward``)."""

    def __init__(self, model: CPC, layer: str = "context", *, waveform_matmul: bool = True) -> None:
        super().__init__()
        if layer not in LAYERS:
            raise ValueError(f"layer={layer!r}: expected one of {LAYERS}")
        self.blocks = model.encoder.blocks
        self.rnn = model.context.rnn if layer == "context" else None
        self.reverse = self.rnn is not None and bool(getattr(model.context, "reverse", False))
        self.minimum_samples: int = model.minimum_samples  # the shortest S with a frame; kept in the TorchScript file
        # The encoder's own layout on the CPU, so that the features are its features bit for bit
        # (channels-last only with the channel norm, as ConvEncoder.uses_channels_last picks it).
        encoder = model.encoder
        self.channels_last: bool = encoder.norm == "channel" and encoder.uses_channels_last(torch.zeros(0))
        # The first layer as ConvEncoder runs it; ONNX cannot export it (unfold over a dynamic length).
        self.waveform_matmul: bool = waveform_matmul

    def forward(self, waveforms: Tensor) -> Tensor:
        if waveforms.dim() != 2:
            raise ValueError("expected waveforms of shape (B, S)")
        if self.channels_last:
            features = self._encode_channels_last(waveforms)
        else:
            x = waveforms.unsqueeze(1)  # (B, 1, S)
            for block in self.blocks:
                x = torch.relu(block["norm"](block["conv"](x)))  # (B, C, T_layer)
            features = x.transpose(1, 2)  # (B, T, C)
        if self.rnn is not None:
            if self.reverse:  # last frame first (an imported CPC_audio model with cpc_mode=reverse)
                features, _ = self.rnn(features.flip(1))  # (B, T, H), reversed
                return features.flip(1)
            features, _ = self.rnn(features)  # (B, T, H)
        return features

    def _encode_channels_last(self, waveforms: Tensor) -> Tensor:
        """ConvEncoder's channels-last forward with the channel norm, without lengths: (B, S) -> (B, T, C)."""
        frames = waveforms[:, :, None]  # (B, S, 1)
        for index, block in enumerate(self.blocks):
            conv = block["conv"]
            if index == 0 and self.waveform_matmul:
                frames = conv_waveforms(waveforms, conv.weight, conv.bias, conv.stride[0], conv.padding[0])
            else:  # ONNX: unfold over a dynamic length does not export; the same convolution as conv2d
                frames = conv_frames(frames, conv.weight, conv.bias, conv.stride[0], conv.padding[0])
            normed = block["norm"](frames.transpose(1, 2))  # ChannelNorm transposes back: LayerNorm on `frames`
            frames = torch.relu(normed).transpose(1, 2)
        return frames


def export(model: CPC, out: str | os.PathLike, format: str, layer: str = "context") -> Path:
    """Write ``model``'s feature extractor (see :class:`FeatureExtractor`) to ``out`` as
    ``format`` ("torchscript" or "onnx"); returns the path. The file is written next to ``out``
    and renamed over it, so a failed export leaves no partial file."""
    out = _check_out(out, format)
    out.parent.mkdir(parents=True, exist_ok=True)
    extractor = FeatureExtractor(model, layer, waveform_matmul=format == "torchscript").eval()
    descriptor, temporary = create_temporary(out)  # a new file: a link planted next to out is never written through
    os.close(descriptor)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # Both exporters are deprecated in torch 2.14 (still supported); say so once in the docs, not on every export.
            warnings.filterwarnings(
                "ignore",
                message=r".*(torch\.jit\.script. is deprecated|legacy TorchScript-based ONNX export|feature will be removed)",
            )
            # nn.GRU/LSTM's own Python checks convert shapes to bools while tracing; the graph is still the ONNX GRU op.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            # "batch_size other than 1 ... GRU can cause an error": not here, the initial state is left out of the
            # graph (ONNX's default, zeros) and other batch sizes run (tested with B = 1, 2, 3).
            warnings.filterwarnings("ignore", message=r"Exporting a model to ONNX with a batch_size other than 1")
            if format == "torchscript":
                torch.jit.script(extractor).save(str(temporary))
            else:
                _export_onnx(extractor, temporary, next(model.parameters()))
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)
    return out


def _export_onnx(extractor: FeatureExtractor, path: Path, parameter: Tensor) -> None:
    example = torch.zeros(EXAMPLE_SHAPE, dtype=parameter.dtype, device=parameter.device).normal_(
        generator=torch.Generator(parameter.device).manual_seed(0)
    )
    torch.onnx.export(
        extractor,
        (example,),
        str(path),
        dynamo=False,
        opset_version=ONNX_OPSET,
        input_names=["waveforms"],
        output_names=["features"],
        dynamic_axes={"waveforms": {0: "batch", 1: "samples"}, "features": {0: "batch", 1: "frames"}},
    )


def _check_out(out: str | os.PathLike, format: str) -> Path:
    if format not in FORMATS:
        raise ValueError(f"format={format!r}: expected one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise ValueError(
            f"--out {out} is a directory: give a file name, e.g. {out / ('features.onnx' if format == 'onnx' else 'features.pt')}"
        )
    if out.parent.exists() and not out.parent.is_dir():
        raise ValueError(f"--out {out}: {out.parent} is not a directory")
    return out


def export_checkpoint(
    checkpoint: str | os.PathLike, out: str | os.PathLike, format: str, layer: str = "context"
) -> Path:
    """Load a cpc checkpoint (strictly, on the CPU) and :func:`export` its feature extractor."""
    from cpc.checkpoint import load

    if layer not in LAYERS:
        raise ValueError(f"layer={layer!r}: expected one of {', '.join(LAYERS)}")
    _check_out(out, format)  # fail before loading anything
    refuse_input_as_output("--out", out, [checkpoint])
    model = load(checkpoint, needs="speech", what="cpc export")
    return export(model, out, format, layer)


# ----------------------------------------------------------------------------- CLI


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export the feature extractor as TorchScript or ONNX",
        description="Export a checkpoint's feature extractor: waveforms (B, S) float32 at 16 kHz -> features (B, T, D), "
        "batch and length dynamic, full-length inputs (no lengths input).",
    )
    parser.add_argument("checkpoint", help="a cpc checkpoint, e.g. runs/tiny/checkpoints/last.pt")
    # Formats and layers are checked by export_checkpoint, so a bad one is a one-line error like any other.
    parser.add_argument("--format", required=True, metavar="FORMAT", help="torchscript or onnx")
    parser.add_argument("--out", required=True, help="file to write (e.g. features.pt, features.onnx)")
    parser.add_argument("--layer", default="context", help="context (c_t, default) or encoder (z_t)")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    path = export_checkpoint(args.checkpoint, args.out, args.format, args.layer)
    import cpc

    minimum = cpc.load(args.checkpoint).minimum_samples  # safe: export_checkpoint just read it
    print(f"wrote {path} ({args.format}, layer {args.layer}; inputs need at least {minimum} samples for one frame)")
    return 0
