"""Encoders map an input sequence to latents z_t (paper, section 2: z_t = g_enc(x_t)).

Shape legend: B batch, S samples, T frames, C latent channels.

The raw-audio encoder is a stack of strided 1-D convolutions declared as data (a list of
``ConvLayer(channels, kernel_size, stride, padding)``). Everything that depends on the stack
is derived from it: ``downsample_rate`` (160 for the paper: 5*4*2*2*2 samples per frame =
10 ms at 16 kHz), ``output_lengths`` and the receptive field.

Valid lengths are carried through every layer and frames past a sequence's length are
zeroed after each layer, so a padded batch gives the same latents as each sequence alone
(with ``norm="batch"`` the batch statistics still see the padding).

Input scale without looking ahead: a first layer without bias followed by ``norm="channel"``
(layer norm over the channels of each frame) gives first-layer activations that do not
depend on the input's gain, frame by frame. This replaces per-window standardisation of
the waveform, whose statistics covered the whole window and so let every frame see the
future (the tiny recipe; both leave the chance plateau equally fast: docs/results.md).

Timing: frame t is computed from samples [t*R - P, t*R - P + F) where R is the
downsample rate, P the accumulated left padding and F the receptive field (paper stack:
R=160, P=153, F=465, so each frame looks 152 samples, 9.5 ms, past its own hop).

Encoders for other modalities live in their own modules (cpc/image/encoder.py: patches ->
a (B, rows, cols, C) grid) and are registered in ``cpc.registry.ENCODERS``; downstream of
the encoder everything works on positions along the prediction axis of that grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from cpc.encoder import check_lengths, mask_frames
from cpc.runtime import plain
from cpc.speech.audio import SAMPLE_RATE
from cpc.speech.config import ConvEncoderConfig, ConvLayer


class ChannelNorm(nn.Module):
    """Normalise each frame over its channels (layer norm per time step), with a learned affine.

    Per-frame, so unlike batch norm it is causal and independent of padding. (B, C, T) -> (B, C, T).
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T) -> (B, C, T)."""
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class UnbiasedChannelNorm(nn.Module):
    """CPC_audio's ChannelNorm: per frame over the channels, as :class:`ChannelNorm` but with the
    unbiased variance (divided by C - 1), so that imported models give the same features. (B, C, T) -> (B, C, T).
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T) or (B, C, 1, T) -> the same shape."""
        mean = x.mean(dim=1, keepdim=True)
        variance = x.var(dim=1, keepdim=True)  # unbiased
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - mean) * torch.rsqrt(variance + self.eps) * self.weight.view(shape) + self.bias.view(shape)


NORMS: dict[str, Callable[[int], nn.Module]] = {
    "none": lambda channels: nn.Identity(),
    "batch": nn.BatchNorm1d,
    "channel": ChannelNorm,
    "channel_unbiased": UnbiasedChannelNorm,
    # Statistics over the whole sequence (padding included): not causal, cannot stream.
    "instance": lambda channels: nn.InstanceNorm1d(channels, affine=True),
}
# Norms whose frame t depends on other frames of the same sequence.
NON_CAUSAL_NORMS = ("instance",)


class ConvEncoder(nn.Module):
    """Strided Conv1d stack over raw audio: (B, S) -> (B, T, C), T = output_lengths(S)."""

    def __init__(self, layers: Sequence[ConvLayer], *, norm: str = "none") -> None:
        super().__init__()
        norm = plain(norm)  # a config enum or its string
        if norm not in NORMS:
            raise ValueError(f"model.encoder.norm={norm!r}: expected one of {sorted(NORMS)}")
        if not layers:
            raise ValueError("model.encoder.layers is empty")
        self.layers = [ConvLayer(**dict(layer)) if not isinstance(layer, ConvLayer) else layer for layer in layers]
        blocks = []
        in_channels = 1
        for layer in self.layers:
            blocks.append(
                nn.ModuleDict(
                    {
                        "conv": nn.Conv1d(
                            in_channels, layer.channels, layer.kernel_size, layer.stride, layer.padding, bias=layer.bias
                        ),
                        "norm": NORMS[norm](layer.channels),
                    }
                )
            )
            in_channels = layer.channels
        self.blocks = nn.ModuleList(blocks)
        self.output_size = in_channels
        self.norm = norm
        self.causal = norm not in NON_CAUSAL_NORMS  # streaming needs it
        # Layout, not model: None picks one (uses_channels_last); True or False forces it
        # (``train.channels_last``; with cuDNN, channels-last reads the activations without
        # transposing them: benchmarks/README.md).
        self.channels_last: bool | None = None

    @property
    def downsample_rate(self) -> int:
        """Input samples per output frame (the product of the strides)."""
        return math.prod(layer.stride for layer in self.layers)

    @property
    def receptive_field(self) -> int:
        """Input samples that one output frame sees."""
        field, jump = 1, 1
        for layer in self.layers:
            field += (layer.kernel_size - 1) * jump
            jump *= layer.stride
        return field

    @property
    def left_padding(self) -> int:
        """Input samples of zero padding before the first frame's receptive field starts at 0."""
        padding, jump = 0, 1
        for layer in self.layers:
            padding += layer.padding * jump
            jump *= layer.stride
        return padding

    @property
    def minimum_samples(self) -> int:
        """The fewest samples that give one feature frame (at most the receptive field)."""
        candidates = torch.arange(1, self.receptive_field + 1)  # (F,)
        return int(torch.nonzero(self.output_lengths(candidates) > 0)[0]) + 1

    def check_waveforms(self, waveforms: Tensor) -> None:
        """Audio input: float samples, (B, S) or (S,) with S long enough for one frame; a ValueError otherwise."""
        if not waveforms.dtype.is_floating_point:
            raise ValueError(
                f"expected float waveforms in [-1, 1], got {waveforms.dtype} (int16 PCM: waveforms.float() / 32768)"
            )
        shortest = waveforms.shape[-1]
        if shortest < self.minimum_samples:
            raise ValueError(
                f"a waveform of {shortest} samples is too short for one frame: this model needs at least {self.minimum_samples} samples "
                f"({self.minimum_samples / SAMPLE_RATE * 1000:.1f} ms at 16 kHz) for one frame"
            )

    def check_inputs(self, inputs: Tensor) -> None:
        """What ``CPC.extract_features`` checks before encoding: a batch (B, S) of float waveforms
        long enough for one frame (``forward`` checks the shape and lengths; a shorter sequence gets 0 frames)."""
        if inputs.dim() == 2:
            self.check_waveforms(inputs)

    def streaming_extractor(self, model: nn.Module, layer: str = "context"):
        """``CPC.stream``: a stateful extractor for audio arriving in chunks (cpc.speech.streaming)."""
        from cpc.speech.streaming import StreamingExtractor  # here: streaming reads this encoder's layers

        return StreamingExtractor(model, layer)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Frames produced for ``lengths`` samples (any integer tensor), layer by layer."""
        for layer in self.layers:
            lengths = _conv_lengths(layer, lengths)
        return lengths

    def forward(self, waveforms: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """waveforms (B, S) float, lengths (B,) samples -> latents (B, T, C), latent lengths (B,)."""
        if waveforms.dim() != 2:
            raise ValueError(f"expected waveforms of shape (B, S), got {tuple(waveforms.shape)}")
        batch_size, num_samples = waveforms.shape
        # Masking is only needed when some sequence is shorter than the batch; skipping it for
        # full-length training windows saves a copy of every activation (and, with no lengths
        # given, a host sync to find out).
        if lengths is None:
            lengths = torch.full((batch_size,), num_samples, dtype=torch.long, device=waveforms.device)
            padded = False
        else:
            check_lengths(lengths, batch_size, num_samples)
            padded = bool((lengths < num_samples).any())
        if padded and not self.causal:
            return self._one_by_one(waveforms, lengths)
        if self.uses_channels_last(waveforms):
            return self._forward_channels_last(waveforms, lengths, padded)
        x = mask_frames(waveforms.unsqueeze(1), lengths) if padded else waveforms.unsqueeze(1)  # (B, 1, S)
        for layer, block in zip(self.layers, self.blocks):
            x = torch.relu_(block["norm"](block["conv"](x)))  # (B, C, T_layer); in place: saves an activation copy
            lengths = _conv_lengths(layer, lengths)
            if padded:
                x = mask_frames(x, lengths)  # zero the frames past each length, as a lone sequence would be padded
        return x.transpose(1, 2), lengths  # (B, T, C)

    def uses_channels_last(self, waveforms: Tensor) -> bool:
        """Whether :meth:`forward` runs the channels-last layout: ``channels_last`` when set, else on
        the CPU with the channel norm (there it halves the encoder's time; without a norm oneDNN's
        channels-last backward is slower at 512 channels: docs/speed.md)."""
        if self.channels_last is not None:
            return self.channels_last
        return waveforms.device.type == "cpu" and self.norm == "channel"

    def _forward_channels_last(self, waveforms: Tensor, lengths: Tensor, padded: bool) -> tuple[Tensor, Tensor]:
        """The stack on (B, T, C) frames: the first layer as one matmul per frame, the others as
        2-D convolutions in channels-last memory. The channel norm then reads each frame's channels
        contiguously and nothing is transposed in memory, forward or backward (docs/speed.md)."""
        frames = mask_frames(waveforms[:, None], lengths)[:, 0] if padded else waveforms  # (B, S)
        for index, (layer, block) in enumerate(zip(self.layers, self.blocks)):
            conv = block["conv"]
            convolve = conv_waveforms if index == 0 else conv_frames
            frames = _norm_relu_frames(
                block["norm"], convolve(frames, conv.weight, conv.bias, layer.stride, layer.padding)
            )
            lengths = _conv_lengths(layer, lengths)
            if padded:  # zero the frames past each length, as a lone sequence would be padded
                frames = frames * (torch.arange(frames.shape[1], device=frames.device) < lengths[:, None])[..., None]
        return frames, lengths  # (B, T, C), contiguous

    def _one_by_one(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Each sequence alone, then padded: statistics over a whole sequence must not see the padding."""
        outputs = [
            self(waveforms[row : row + 1, : int(length)])[0][0] for row, length in enumerate(lengths)
        ]  # (T_b, C) each
        latents = nn.utils.rnn.pad_sequence(outputs, batch_first=True)  # (B, T_max, C)
        total = int(self.output_lengths(torch.tensor(waveforms.shape[1])))
        return nn.functional.pad(latents, (0, 0, 0, total - latents.shape[1])), self.output_lengths(
            lengths
        )  # (B, T, C)


def conv_waveforms(waveforms: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int) -> Tensor:
    """A Conv1d with one input channel as a matmul of frames: (B, S) -> (B, T, C_out), contiguous.
    Three times faster than oneDNN's one-channel convolution on a CPU, and in the (B, T, C)
    layout the channel norm wants (docs/speed.md). weight (C_out, 1, k)."""
    frames = nn.functional.pad(waveforms, (padding, padding)).unfold(-1, weight.shape[-1], stride)  # (B, T, k)
    # A row-major (k, C_out) matrix: autograd then forms its gradient as frames^T @ grad, a third
    # of the time of the (grad^T @ frames)^T it takes for a transposed view.
    out = frames.contiguous() @ weight.flatten(1).T.contiguous()  # (B, T, C_out)
    return out if bias is None else out + bias


def conv_frames(frames: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int) -> Tensor:
    """A Conv1d on (B, T, C_in) frames -> (B, T_out, C_out) frames, both (B, T, C) in memory: a 2-D
    convolution over (B, C, 1, T) in channels-last memory. weight (C_out, C_in, k)."""
    x = frames.transpose(1, 2).unsqueeze(2)  # (B, C_in, 1, T), channels-last memory
    weight = weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # (C_out, C_in, 1, k)
    out = nn.functional.conv2d(x, weight, bias, stride=(1, stride), padding=(0, padding))
    return out.contiguous(memory_format=torch.channels_last).squeeze(2).transpose(1, 2)  # (B, T_out, C_out)


def _norm_relu_frames(norm: nn.Module, frames: Tensor) -> Tensor:
    """ReLU(norm(frames)) on (B, T, C) -> (B, T, C). The in-place ReLU acts on a tensor of its own,
    never on a view of another (autograd would then copy the whole base in the backward)."""
    if isinstance(norm, nn.Identity):
        return torch.relu(frames)
    if isinstance(norm, ChannelNorm):
        return torch.relu_(norm.norm(frames))  # over the last axis: no transpose
    return torch.relu_(norm(frames.transpose(1, 2))).transpose(1, 2).contiguous()  # (B, T, C) in memory too


def _conv_lengths(layer: ConvLayer, lengths: Tensor) -> Tensor:
    """Output length of one Conv1d: floor((L + 2p - k) / s) + 1, and never negative."""
    return (torch.div(lengths + 2 * layer.padding - layer.kernel_size, layer.stride, rounding_mode="floor") + 1).clamp(
        min=0
    )


def build_conv_encoder(config: ConvEncoderConfig) -> ConvEncoder:
    return ConvEncoder(config.layers, norm=config.norm)


def require_audio_model(model: nn.Module, what: str, source: object = "the model") -> None:
    """Audio commands (extract, export, streaming) need the raw-audio conv encoder: a ValueError naming the encoder otherwise."""
    if not isinstance(getattr(model, "encoder", None), ConvEncoder):
        name = (
            (getattr(model, "config", None) or {})
            .get("encoder", {})
            .get("name", type(getattr(model, "encoder", model)).__name__)
        )
        raise ValueError(f"{what} reads raw audio, but {source} has the {name!r} encoder (not an audio model)")
