"""The patch encoder: z_{i,j} = g_enc(x_{i,j}), one latent vector per patch of the grid (paper, section 3.2).

Shape legend: B batch, G grid rows = cols (7), P patch size (8), N = B * G * G patches,
D conv channels, C latent size.

Image CPC (van den Oord et al. 2018, section 3.2) cuts each image into a grid of overlapping
patches (here 7 x 7 patches of 8 x 8 pixels at 50 % overlap, cpc/image/data.py) and encodes
every patch on its own into one latent vector. The context network then reads the grid of
latents top to bottom (cpc/image/context.py).

Architecture: a small residual conv net (the paper uses a ResNet-v2-101 on 64 x 64 patches;
CPC v2, Henaff et al. 2019, a wider and deeper ResNet). For an 8 x 8 patch:

    stem      conv 3 x 3, 1 -> D, norm, ReLU                 (N, D, 8, 8)
    block 1   residual block, stride 2 (1 x 1 strided skip)  (N, D, 4, 4)
    block i   residual block, stride 1                       (N, D, 4, 4)
    pool      mean over the 4 x 4 positions                  (N, D)
    project   linear D -> C                                  (N, C) -> (B, G, G, C)

A residual block is post-activation (He et al. 2016): conv 3 x 3 - norm - ReLU - conv 3 x 3 -
norm, plus the input, then ReLU; the network is only a few convolutions deep, where the
pre-activation form of ResNet-v2 brings nothing. The first block halves the resolution
(stride 2, with a strided 1 x 1 projection on the skip path): the later blocks then cost a
quarter, and the receptive field grows faster (3 pixels after the stem, 9 after block 1, 17
after block 2), so with the default two blocks every one of the 4 x 4 positions sees the whole
8 x 8 patch and the mean pool averages features of the whole patch, not of its corners.

Every patch is encoded alone: the (B, G, G) grid is folded into the batch dimension, and each
norm is computed within one patch. No batch norm (CPC v2, section 3): batch statistics mix the
patches of a batch, so a patch's latent would carry information about other patches, which
leaks information past the receptive-field constraint the task is built on. Here it would let
a row see the rows below it (the ones the context must predict) through the mean and variance,
and let the model solve the task through the statistics instead of the content. Group norm
(``norm: group``, D / ``groups`` channels per group) or layer norm over (D, p, p) of one patch
(``norm: layer``, a group norm with one group) normalise within one patch, so latent (b, i, j)
depends on patch (b, i, j) alone, in train and eval mode alike.

Lengths are rows of patches (the prediction axis). They are checked and passed through but
nothing is masked: a patch's latent depends on that patch only, so rows past a length cannot
change any other row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from cpc.encoder import check_lengths
from cpc.runtime import plain

__all__ = ["NORMS", "PatchEncoder", "PatchEncoderConfig", "ResidualBlock", "build_patch_encoder"]

NORMS = ("group", "layer", "none")  # per patch; never batch norm (see the module docstring)


@dataclass
class PatchEncoderConfig:
    name: str = "patch_resnet"
    patch_size: int = 8  # P; must match data.patch_size
    channels: int = 64  # D, the conv width
    blocks: int = 2  # residual blocks; the first one halves the resolution
    latent_size: int = 128  # C
    norm: str = "group"  # group | layer | none; never batch (see the module docstring)
    groups: int = 8  # groups of group norm; must divide channels


def _norm(kind: str, channels: int, groups: int) -> nn.Module:
    """A norm over one patch's (D, p, p) activations, or none: (N, D, p, p) -> (N, D, p, p)."""
    if kind == "group":
        return nn.GroupNorm(groups, channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)  # layer norm over (D, p, p) of each patch, an affine per channel
    return nn.Identity()


class ResidualBlock(nn.Module):
    """conv 3 x 3 - norm - ReLU - conv 3 x 3 - norm, plus the (projected) input, then ReLU.

    (N, D, p, p) -> (N, D, ceil(p / stride), ceil(p / stride)).
    """

    def __init__(self, channels: int, *, stride: int = 1, norm: str = "group", groups: int = 8) -> None:
        super().__init__()
        bias = norm == "none"  # a norm's own shift makes a conv bias redundant
        self.conv1 = nn.Conv2d(channels, channels, 3, stride, 1, bias=bias)
        self.norm1 = _norm(norm, channels, groups)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=bias)
        self.norm2 = _norm(norm, channels, groups)
        self.skip = nn.Identity() if stride == 1 else nn.Conv2d(channels, channels, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.norm1(self.conv1(x)))  # (N, D, p / stride, p / stride)
        return torch.relu(self.norm2(self.conv2(y)) + self.skip(x))  # (N, D, p / stride, p / stride)


class PatchEncoder(nn.Module):
    """patches (B, G, G, P, P) -> latents (B, G, G, C), one residual conv net applied to each patch alone.

    ``output_size`` is C (``latent_size``); ``patch_size`` is P, which the data source checks
    against its own.
    """

    def __init__(
        self,
        *,
        patch_size: int = 8,
        channels: int = 64,
        blocks: int = 2,
        latent_size: int = 128,
        norm: str = "group",
        groups: int = 8,
    ) -> None:
        super().__init__()
        norm = plain(norm)  # a config enum or its string
        if norm not in NORMS:
            raise ValueError(
                f"model.encoder.norm={norm!r}: expected one of {list(NORMS)} "
                "(no batch norm: batch statistics would let patches see each other)"
            )
        if norm == "group" and channels % groups:
            raise ValueError(f"model.encoder.channels={channels} is not a multiple of model.encoder.groups={groups}")
        if patch_size < 1 or blocks < 0:
            raise ValueError(f"model.encoder: expected patch_size >= 1 and blocks >= 0, got {patch_size} and {blocks}")
        self.patch_size = patch_size
        self.output_size = latent_size
        self.stem = nn.Sequential(
            nn.Conv2d(1, channels, 3, 1, 1, bias=norm == "none"), _norm(norm, channels, groups), nn.ReLU()
        )
        self.blocks = nn.Sequential(
            *(ResidualBlock(channels, stride=2 if i == 0 else 1, norm=norm, groups=groups) for i in range(blocks))
        )
        self.project = nn.Linear(channels, latent_size)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Rows of latents for ``lengths`` rows of patches: the same (one latent per patch)."""
        return lengths

    def forward(self, patches: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """patches (B, G1, G2, P, P) float, lengths (B,) valid rows or None -> latents (B, G1, G2, C), lengths (B,) long.

        ``lengths=None`` means every row is valid. Nothing is masked: each patch is encoded
        alone, so rows past a length cannot change any other row.
        """
        p = self.patch_size
        if patches.dim() != 5 or patches.shape[-2:] != (p, p):
            raise ValueError(f"expected patches of shape (B, rows, cols, {p}, {p}), got {tuple(patches.shape)}")
        batch_size, rows, cols = patches.shape[:3]
        if lengths is None:
            lengths = torch.full((batch_size,), rows, dtype=torch.long, device=patches.device)
        else:
            check_lengths(lengths, batch_size, rows, unit="number of rows", of=f"a grid of {rows} rows")
            lengths = lengths.to(torch.long)
        x = rearrange(patches, "b gh gw p q -> (b gh gw) 1 p q")  # (N, 1, P, P)
        x = self.blocks(self.stem(x))  # (N, D, P / 2, P / 2)
        z = self.project(x.mean(dim=(2, 3)))  # (N, C)
        latents = rearrange(z, "(b gh gw) c -> b gh gw c", b=batch_size, gh=rows, gw=cols)  # (B, G1, G2, C)
        return latents, lengths


def build_patch_encoder(config: PatchEncoderConfig) -> PatchEncoder:
    return PatchEncoder(
        patch_size=config.patch_size,
        channels=config.channels,
        blocks=config.blocks,
        latent_size=config.latent_size,
        norm=config.norm,
        groups=config.groups,
    )
