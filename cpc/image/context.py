"""The image context network: c_{r,c} = g_ar(z_{<=r}), read top to bottom (paper, section 3.2).

Shape legend: B batch, G grid rows = cols (7), C latent size, H context size (hidden_size),
k kernel size.

Image CPC predicts the latents of row r + k from the context at row r (k >= 2, cpc/predictors.py),
so context row r may depend on latent rows <= r only; within those rows every column may mix
(the paper's context summarises "the rows above", section 3.2). Both networks take and return
channel-last grids, latents (B, G, G, C) -> context (B, G, G, H), with the sequence context
networks' signature ``(latents, hidden) -> (context, hidden)``. An image is not a stream, so
there is no hidden state to carry: ``hidden`` must be None and None is returned.

``masked_conv`` (the paper's PixelCNN-style autoregressive model, van den Oord et al. 2016):

    project   linear C -> H at each position (a 1 x 1 conv)                    (B, G, G, H)
    block i   x + ReLU(LayerNorm(row-causal k x k conv(x))), ``layers`` times  (B, G, G, H)

The row-causal convolution pads its input with k - 1 rows of zeros at the top, none at the
bottom, and (k - 1) / 2 columns on each side, then runs an ordinary k x k convolution: output
row r reads input rows r - k + 1 .. r. That is a PixelCNN masked convolution whose mask zeroes
the kernel rows below the centre, written as a shift of the input instead of a mask on the
weights (no wasted multiplications by zero, and nothing to re-apply after each optimiser step).
Unlike PixelCNN's pixel mask, the current row is not masked to the left: the context at row r
is allowed to see all of row r. Each block adds k - 1 rows above and (k - 1) / 2 columns either
side to the receptive field (``receptive_field``): the defaults (k = 3, 3 blocks) see the 6 rows
above, i.e. the whole 7-row grid for the last row, and 3 columns either side. The layer norm is
over the H channels of one position (``nn.LayerNorm`` on the channel-last grid), so it is causal
too; batch norm would not be (see cpc/image/encoder.py).

``row_gru`` (an option): a GRU runs down each column, rows as time steps; its input at (r, c) is
z[r, c] concatenated with the mean of z over row r's columns, so the columns mix (through the
row mean) while the recurrence keeps rows causal.

Rows past a valid length (padding at the bottom) cannot change earlier rows in either network,
so nothing is masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from cpc.runtime import plain

__all__ = [
    "MaskedConvContext",
    "MaskedConvContextConfig",
    "RowCausalConv",
    "RowGRUContext",
    "RowGRUContextConfig",
    "build_masked_conv_context",
    "build_row_gru_context",
]

CONTEXT_NORMS = ("layer", "none")  # per position over channels: causal


@dataclass
class MaskedConvContextConfig:
    name: str = "masked_conv"
    hidden_size: int = 128  # H
    layers: int = 3  # residual blocks
    kernel_size: int = 3  # k, odd: k - 1 rows above and (k - 1) / 2 columns either side
    norm: str = "layer"  # layer | none (per position over channels: causal)


@dataclass
class RowGRUContextConfig:
    name: str = "row_gru"
    hidden_size: int = 128  # H


def _check_inputs(latents: Tensor, hidden: object, input_size: int) -> None:
    """latents must be (B, rows, cols, C) with C = input_size, and hidden None; ValueError quoting the shape otherwise."""
    if latents.dim() != 4 or latents.shape[-1] != input_size:
        raise ValueError(f"expected latents of shape (B, rows, cols, {input_size}), got {tuple(latents.shape)}")
    if hidden is not None:
        raise ValueError("image context networks carry no hidden state between calls: pass hidden=None")


class RowCausalConv(nn.Module):
    """k x k convolution in which output row r sees input rows r - k + 1 .. r: (B, H, rows, cols) -> (B, H, rows, cols).

    Equal to a PixelCNN masked convolution with the kernel rows below the centre zeroed,
    expressed by padding k - 1 rows on top and none below.
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"model.context.kernel_size={kernel_size}: expected an odd size >= 1 (a centre column)")
        side = (kernel_size - 1) // 2
        self.padding = (side, side, kernel_size - 1, 0)  # F.pad order: (left, right, top, bottom)
        self.conv = nn.Conv2d(channels, channels, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, self.padding))  # (B, H, rows + k - 1, cols + k - 1) -> (B, H, rows, cols)


class MaskedConvContext(nn.Module):
    """latents (B, G, G, C) -> context (B, G, G, H); context row r depends on latent rows <= r only."""

    def __init__(
        self, *, input_size: int, hidden_size: int = 128, layers: int = 3, kernel_size: int = 3, norm: str = "layer"
    ) -> None:
        super().__init__()
        norm = plain(norm)  # a config enum or its string
        if norm not in CONTEXT_NORMS:
            raise ValueError(f"model.context.norm={norm!r}: expected one of {list(CONTEXT_NORMS)}")
        if layers < 0:
            raise ValueError(f"model.context.layers={layers}: expected >= 0")
        self.input_size, self.output_size = input_size, hidden_size
        self.kernel_size, self.layers = kernel_size, layers
        self.project = nn.Linear(input_size, hidden_size)  # a 1 x 1 convolution on the channel-last grid
        self.convs = nn.ModuleList(RowCausalConv(hidden_size, kernel_size) for _ in range(layers))
        self.norms = nn.ModuleList(
            nn.LayerNorm(hidden_size) if norm == "layer" else nn.Identity() for _ in range(layers)
        )

    @property
    def receptive_field(self) -> tuple[int, int]:
        """(rows, cols) of latents one context vector sees: rows r - rows + 1 .. r, cols c -/+ (cols - 1) / 2."""
        reach = self.layers * (self.kernel_size - 1)
        return reach + 1, reach + 1

    def forward(self, latents: Tensor, hidden: None = None) -> tuple[Tensor, None]:
        """latents (B, G1, G2, C), hidden None -> context (B, G1, G2, H), None."""
        _check_inputs(latents, hidden, self.input_size)
        x = self.project(latents)  # (B, G1, G2, H)
        for conv, norm in zip(self.convs, self.norms):
            y = conv(rearrange(x, "b r c h -> b h r c"))  # (B, H, G1, G2)
            x = x + torch.relu(norm(rearrange(y, "b h r c -> b r c h")))  # (B, G1, G2, H)
        return x, None


class RowGRUContext(nn.Module):
    """latents (B, G, G, C) -> context (B, G, G, H): a GRU down each column, fed [z[r, c], mean of z over row r]."""

    def __init__(self, *, input_size: int, hidden_size: int = 128) -> None:
        super().__init__()
        self.input_size, self.output_size = input_size, hidden_size
        self.rnn = nn.GRU(2 * input_size, hidden_size, batch_first=True)

    def forward(self, latents: Tensor, hidden: None = None) -> tuple[Tensor, None]:
        """latents (B, G1, G2, C), hidden None -> context (B, G1, G2, H), None."""
        _check_inputs(latents, hidden, self.input_size)
        batch_size, _, cols, _ = latents.shape
        row_mean = latents.mean(dim=2, keepdim=True).expand_as(latents)  # (B, G1, G2, C): row r's mean in every column
        inputs = rearrange(torch.cat([latents, row_mean], dim=-1), "b r c d -> (b c) r d")  # (B * G2, G1, 2C)
        output, _ = self.rnn(inputs)  # (B * G2, G1, H): row r from rows <= r
        return rearrange(output, "(b c) r h -> b r c h", b=batch_size, c=cols), None  # (B, G1, G2, H)


def build_masked_conv_context(config: MaskedConvContextConfig, input_size: int) -> MaskedConvContext:
    return MaskedConvContext(
        input_size=input_size,
        hidden_size=config.hidden_size,
        layers=config.layers,
        kernel_size=config.kernel_size,
        norm=config.norm,
    )


def build_row_gru_context(config: RowGRUContextConfig, input_size: int) -> RowGRUContext:
    return RowGRUContext(input_size=input_size, hidden_size=config.hidden_size)
