"""Streaming feature extraction: audio chunks of any size in, the frames completed so far out.

Shape legend: S samples (16 kHz), T frames, C latent channels, H context size, D = C or H.

    stream = model.eval().stream(layer="context")
    for chunk in chunks:                  # (S_chunk,) or (1, S_chunk), any size, 1 sample included
        frames = stream(chunk)            # (T_new, D): the frames whose inputs have all arrived
    frames = stream.flush()               # (T_rest, D): the frames that read the right zero padding

The concatenation of every output, flush included, equals ``model.extract_features(x[None])``
for the whole waveform x (up to float rounding, ~1e-6).

How: each convolution of the encoder keeps a buffer of the input frames it still needs (the
layer's own padding, then its input), computes every output whose kernel is complete and
drops the input frames no later output reads. So each layer holds fewer than
``kernel_size`` of its input frames, and nothing is recomputed. Everything comes from the
conv stack as data (``kernel_size``, ``stride``, ``padding`` per layer). Norm and ReLU act on
each frame alone (channel norm, or batch norm in eval mode), so they run on whatever frames a
layer produces. ``flush()`` appends each layer's right padding in turn, from the first layer to
the last. The context network's hidden state is carried from one call to the next.

Latency. Frame t reads samples [t*R - P, t*R - P + F), where R is the downsample rate, P the
accumulated left padding and F the receptive field (``ConvEncoder``). So frame t is returned by
the call that brings the number of samples received to t*R - P + F or more, and no later:
after n samples, ``ready_frames(n) = max(0, (n + P - F) // R + 1)`` frames have been returned.
For the paper's stack (and the tiny recipe, which has the same kernels and strides), R = 160,
P = 153, F = 465: frame t needs samples up to 160 t + 311, so it comes out once 160 t + 312
samples are in. That is ``lookahead = F - P - R = 152`` samples (9.5 ms) past the end of the
frame's own 10 ms hop, or 312 samples (19.5 ms) after the hop's first sample. A chunk of c
samples adds up to c - 1 samples of waiting on top. The GRU/LSTM adds none: c_t only reads
z_{<=t}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from cpc.speech.config import ConvLayer

if TYPE_CHECKING:
    from cpc.model import CPC

__all__ = ["StreamingExtractor"]


class _StreamingConv:
    """One conv layer (+ norm + ReLU) over a stream of input frames.

    Offline, the layer sees ``padding`` zeros, its input, ``padding`` zeros, and output j reads
    padded frames [j*stride, j*stride + kernel_size). The buffer holds the padded frames from
    the next output's first one on: (1, C_in, < kernel_size) between calls.
    """

    def __init__(self, layer: ConvLayer, block: nn.ModuleDict, in_channels: int, weight: Tensor) -> None:
        self.layer = layer
        self.block = block
        self.in_channels = in_channels
        self.weight = weight  # for the device and dtype of the padding
        self.reset()

    def reset(self) -> None:
        self.buffer = self._zeros(self.layer.padding)  # (1, C_in, padding): the left padding
        self.skip = 0  # padded frames no output reads that have not arrived yet (kernel_size < stride)

    def _zeros(self, frames: int) -> Tensor:
        return self.weight.new_zeros(1, self.in_channels, frames)

    def push(self, x: Tensor) -> Tensor:
        """New input frames (1, C_in, T_in) -> the outputs now complete (1, C_out, T_out), T_out >= 0."""
        if self.skip:
            dropped = min(self.skip, x.shape[-1])
            x, self.skip = x[..., dropped:], self.skip - dropped
        if x.shape[-1]:
            self.buffer = torch.cat([self.buffer, x], dim=-1)
        kernel_size, stride = self.layer.kernel_size, self.layer.stride
        available = self.buffer.shape[-1]
        if available < kernel_size:
            return self.weight.new_zeros(1, self.layer.channels, 0)
        outputs = (available - kernel_size) // stride + 1
        used = self.buffer[..., : (outputs - 1) * stride + kernel_size]
        # conv's own padding is applied by hand (the buffer holds it), so call the functional form.
        conv = self.block["conv"]
        y = nn.functional.conv1d(used, conv.weight, conv.bias, stride)  # (1, C_out, outputs)
        self.skip = max(0, outputs * stride - available)
        self.buffer = self.buffer[..., outputs * stride :]
        return torch.relu(self.block["norm"](y))

    def flush(self, x: Tensor) -> Tensor:
        """The last input frames, then the right padding -> the remaining outputs (1, C_out, T_out)."""
        return self.push(torch.cat([x, self._zeros(self.layer.padding)], dim=-1))


class StreamingExtractor:
    """Stateful feature extraction over a stream of audio chunks; see the module docstring.

    ``stream(chunk)``: chunk (S_chunk,) or (1, S_chunk) float at 16 kHz, any S_chunk >= 0 ->
    features (T_new, D) of the frames completed by this chunk (D = C for ``layer="encoder"``,
    H for ``"context"``). ``flush()`` -> (T_rest, D), the last frames, and starts a new stream.
    ``reset()`` drops a stream midway. The model must not be changed while streaming; put it in
    eval mode first (batch norm in training mode looks at the whole batch and cannot stream).
    """

    def __init__(self, model: CPC, layer: str = "context") -> None:
        from cpc.model import LAYERS

        if layer not in LAYERS:
            raise ValueError(f"layer={layer!r}: expected one of {LAYERS}")
        encoder = model.encoder
        if getattr(encoder, "streaming_extractor", None) is None:  # the conv encoder (cpc.speech.encoder)
            raise ValueError(f"streaming needs the conv encoder, got {type(encoder).__name__}")
        if not getattr(encoder, "causal", True):
            raise ValueError(
                f"the encoder's norm={encoder.norm!r} uses statistics of the whole sequence: it cannot stream"
            )
        if layer == "context" and not getattr(model.context, "causal", True):
            raise ValueError(
                "the context network runs backwards in time (reverse=True): it cannot stream; use layer='encoder'"
            )
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in encoder.modules()):
            raise ValueError("batch norm in training mode cannot stream: call model.eval() first")
        self.model = model
        self.layer = layer
        weight = encoder.blocks[0]["conv"].weight
        in_channels = [1] + [layer.channels for layer in encoder.layers[:-1]]
        self._convs = [
            _StreamingConv(spec, block, c, weight)
            for spec, block, c in zip(encoder.layers, encoder.blocks, in_channels)
        ]
        self.output_size = encoder.output_size if layer == "encoder" else model.context.output_size
        self.reset()

    # ------------------------------------------------------------------ timing

    @property
    def downsample_rate(self) -> int:
        """R: samples per frame (160 for the paper's stack)."""
        return self.model.encoder.downsample_rate

    @property
    def lookahead(self) -> int:
        """Samples frame t reads past the end of its own hop [t*R, (t+1)*R): F - P - R (152 = 9.5 ms for the paper)."""
        encoder = self.model.encoder
        return encoder.receptive_field - encoder.left_padding - encoder.downsample_rate

    def ready_frames(self, num_samples: int) -> int:
        """Frames returned (before ``flush``) once ``num_samples`` samples have been pushed."""
        encoder = self.model.encoder
        return max(0, (num_samples + encoder.left_padding - encoder.receptive_field) // encoder.downsample_rate + 1)

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forget the stream: empty buffers (only the left padding), no hidden state."""
        for conv in self._convs:
            conv.reset()
        self.hidden = None  # the context network's state after the last frame returned
        self.samples_received = 0
        self.frames_returned = 0

    # ------------------------------------------------------------------ streaming

    def __call__(self, chunk: Tensor) -> Tensor:
        """chunk (S_chunk,) or (1, S_chunk) -> features (T_new, D) of the frames completed so far."""
        chunk = self._check(chunk)
        self.samples_received += chunk.shape[-1]
        with torch.no_grad():
            x = chunk.reshape(1, 1, -1)  # (1, 1, S_chunk)
            for conv in self._convs:
                x = conv.push(x)  # (1, C_layer, T_layer)
                if not x.shape[-1]:
                    break  # nothing new reaches the layers above (their buffers are unchanged)
            return self._finish(x)

    def flush(self) -> Tensor:
        """End of the stream -> features (T_rest, D) of the frames reading right padding; then reset."""
        with torch.no_grad():
            x = self._convs[0].weight.new_zeros(1, 1, 0)
            for conv in self._convs:
                x = conv.flush(x)
            features = self._finish(x)
        self.reset()
        return features

    def _finish(self, x: Tensor) -> Tensor:
        """Top-layer frames (1, C, T_new) -> features (T_new, D), carrying the hidden state."""
        latents = x.transpose(1, 2)  # (1, T_new, C)
        if latents.shape[1] == 0:
            return latents.new_zeros(0, self.output_size)
        self.frames_returned += latents.shape[1]
        if self.layer == "encoder":
            return latents[0]
        context, self.hidden = self.model.context(latents, self.hidden)  # (1, T_new, H)
        return context[0]

    def _check(self, chunk: Tensor | np.ndarray) -> Tensor:
        chunk = torch.as_tensor(chunk)
        if not chunk.dtype.is_floating_point:
            raise ValueError(f"expected a float chunk, got {chunk.dtype}")
        if chunk.dim() == 2 and chunk.shape[0] == 1:
            chunk = chunk[0]
        if chunk.dim() != 1:
            raise ValueError(f"expected a chunk of shape (S_chunk,) or (1, S_chunk), got {tuple(chunk.shape)}")
        weight = self._convs[0].weight
        return chunk.to(device=weight.device, dtype=weight.dtype)
