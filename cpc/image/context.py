"""The image context network: c_{r,c} = g_ar(z over rows <= r), top to bottom (paper, section 3.2).

Shape legend: B batch, G grid rows = cols (7), C latent size, H context size.

``masked_conv`` (the paper's PixelCNN-style autoregressive model): a 1 x 1 projection to H,
then residual blocks of a row-causal k x k convolution, per-position layer norm and ReLU. Row
causality by padding: each convolution's input gets k - 1 rows of zeros on top and none below
(and (k - 1) / 2 columns on each side), so output row r reads input rows r - k + 1 .. r. That
is a PixelCNN convolution whose mask zeroes the kernel rows below the centre, written as a
shift; columns of the same and earlier rows mix freely, as in the paper, whose context sees
the whole rows above.

``row_gru`` (an option): a GRU runs down each column; its input at (r, c) is z[r, c] and the
mean of row r's latents, so columns mix while rows stay causal.

Both take and return channel-last grids, (B, G, G, C) -> (B, G, G, H), with the sequence
context networks' signature ``(latents, hidden) -> (context, hidden)``; images have no stream
to carry a hidden state across, so it is always None.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


@dataclass
class MaskedConvContextConfig:
    name: str = "masked_conv"
    hidden_size: int = 128  # H
    layers: int = 3  # residual blocks
    kernel_size: int = 3  # odd: k - 1 rows above, (k - 1) / 2 columns either side
    norm: str = "layer"  # layer | none (per position over channels: causal)


@dataclass
class RowGRUContextConfig:
    name: str = "row_gru"
    hidden_size: int = 128  # H


def _check_grid(latents: Tensor, input_size: int) -> None:
    if latents.dim() != 4 or latents.shape[-1] != input_size:
        raise ValueError(f"expected latents of shape (B, rows, cols, {input_size}), got {tuple(latents.shape)}")


class RowCausalConv(nn.Module):
    """k x k convolution where output row r sees input rows <= r: (B, D, rows, cols) -> (B, D, rows, cols)."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"model.context.kernel_size={kernel_size}: expected an odd size >= 1")
        self.padding = ((kernel_size - 1) // 2, (kernel_size - 1) // 2, kernel_size - 1, 0)  # (left, right, top, bottom)
        self.conv = nn.Conv2d(channels, channels, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, self.padding))


class MaskedConvContext(nn.Module):
    """latents (B, G, G, C) -> context (B, G, G, H), row r from latent rows <= r."""

    def __init__(self, input_size: int, *, hidden_size: int = 128, layers: int = 3, kernel_size: int = 3, norm: str = "layer") -> None:
        super().__init__()
        if norm not in ("layer", "none"):
            raise ValueError(f"model.context.norm={norm!r}: expected 'layer' or 'none'")
        self.input_size, self.output_size = input_size, hidden_size
        self.project = nn.Linear(input_size, hidden_size)
        self.convs = nn.ModuleList(RowCausalConv(hidden_size, kernel_size) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_size) if norm == "layer" else nn.Identity() for _ in range(layers))

    def forward(self, latents: Tensor, hidden: None = None) -> tuple[Tensor, None]:
        _check_grid(latents, self.input_size)
        x = self.project(latents)  # (B, G, G, H)
        for conv, norm in zip(self.convs, self.norms):
            y = conv(rearrange(x, "b r c h -> b h r c"))  # (B, H, G, G)
            x = x + torch.relu(norm(rearrange(y, "b h r c -> b r c h")))  # (B, G, G, H)
        return x, None


class RowGRUContext(nn.Module):
    """latents (B, G, G, C) -> context (B, G, G, H): a GRU down each column, fed [z, row mean]."""

    def __init__(self, input_size: int, *, hidden_size: int = 128) -> None:
        super().__init__()
        self.input_size, self.output_size = input_size, hidden_size
        self.rnn = nn.GRU(2 * input_size, hidden_size, batch_first=True)

    def forward(self, latents: Tensor, hidden: None = None) -> tuple[Tensor, None]:
        _check_grid(latents, self.input_size)
        batch_size, rows, cols, _ = latents.shape
        row_mean = latents.mean(dim=2, keepdim=True).expand_as(latents)  # (B, G, G, C)
        inputs = rearrange(torch.cat([latents, row_mean], dim=-1), "b r c d -> (b c) r d")  # (B * cols, rows, 2C)
        output, _ = self.rnn(inputs)  # (B * cols, rows, H)
        return rearrange(output, "(b c) r h -> b r c h", b=batch_size, c=cols), None


def build_masked_conv_context(config: MaskedConvContextConfig, input_size: int) -> MaskedConvContext:
    return MaskedConvContext(input_size, hidden_size=config.hidden_size, layers=config.layers, kernel_size=config.kernel_size, norm=config.norm)


def build_row_gru_context(config: RowGRUContextConfig, input_size: int) -> RowGRUContext:
    return RowGRUContext(input_size, hidden_size=config.hidden_size)
