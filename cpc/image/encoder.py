"""The patch encoder: z = g_enc(patch), one latent vector per patch of the grid (paper, section 3.2).

Shape legend: B batch, G grid rows = cols (7), P patch size (8), D conv channels, C latent size.

A small residual conv net (the paper uses a ResNet-v2-101 on 64 x 64 patches; CPC v2 a wider
ResNet): a 3 x 3 stem, ``blocks`` residual blocks of two 3 x 3 convolutions (the first block
halves the resolution, 8 x 8 -> 4 x 4, with a strided 1 x 1 projection on the skip path), a
mean over the patch's positions and a linear map to C. Every patch is encoded on its own: the
(B, G, G) grid is folded into the batch, and each norm is computed within one patch.

No batch norm (CPC v2, Henaff et al. 2019): batch statistics mix the patches of a batch, so a
patch's latent would carry information about the other patches (including those the context
must predict), bypassing the receptive-field constraint the task relies on. Group norm
(``norm: group``) or layer norm over (D, P, P) of one patch (``norm: layer``) do not.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn


@dataclass
class PatchEncoderConfig:
    name: str = "patch_resnet"
    patch_size: int = 8  # P; must match the data's patch_size
    channels: int = 64  # D, conv width
    blocks: int = 2  # residual blocks; the first one halves the resolution
    latent_size: int = 128  # C
    norm: str = "group"  # group | layer | none (never batch: see the module docstring)
    groups: int = 8  # groups of group norm


NORMS = ("group", "layer", "none")


def _norm(kind: str, channels: int, groups: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(groups, channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)  # over (D, P, P) of each patch
    return nn.Identity()


class ResidualBlock(nn.Module):
    """conv3x3 - norm - ReLU - conv3x3 - norm, plus the (projected) input, then ReLU: (N, D, p, p) -> (N, D, p / stride, p / stride)."""

    def __init__(self, channels: int, *, stride: int, norm: str, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.norm1 = _norm(norm, channels, groups)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.norm2 = _norm(norm, channels, groups)
        self.skip = nn.Identity() if stride == 1 else nn.Conv2d(channels, channels, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(y)) + self.skip(x))


class PatchEncoder(nn.Module):
    """patches (B, G, G, P, P) -> latents (B, G, G, C), lengths (B,) rows."""

    def __init__(self, *, patch_size: int = 8, channels: int = 64, blocks: int = 2, latent_size: int = 128, norm: str = "group",
                 groups: int = 8) -> None:
        super().__init__()
        norm = getattr(norm, "value", norm)
        if norm not in NORMS:
            raise ValueError(f"model.encoder.norm={norm!r}: expected one of {list(NORMS)} (batch norm would let patches see each other)")
        if norm == "group" and channels % groups:
            raise ValueError(f"model.encoder.channels={channels} is not a multiple of model.encoder.groups={groups}")
        self.patch_size, self.output_size = patch_size, latent_size
        self.stem = nn.Sequential(nn.Conv2d(1, channels, 3, 1, 1, bias=False), _norm(norm, channels, groups), nn.ReLU())
        self.blocks = nn.Sequential(*(ResidualBlock(channels, stride=2 if i == 0 else 1, norm=norm, groups=groups) for i in range(blocks)))
        self.project = nn.Linear(channels, latent_size)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Rows of latents for ``lengths`` rows of patches: the same."""
        return lengths

    def forward(self, patches: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """patches (B, G1, G2, P, P) float, lengths (B,) valid rows or None -> latents (B, G1, G2, C), lengths (B,).

        Each patch is encoded alone, so rows past a length cannot change any other row and are not masked.
        """
        p = self.patch_size
        if patches.dim() != 5 or patches.shape[-2:] != (p, p):
            raise ValueError(f"expected patches of shape (B, rows, cols, {p}, {p}), got {tuple(patches.shape)}")
        batch_size, rows, cols = patches.shape[:3]
        if lengths is None:
            lengths = torch.full((batch_size,), rows, dtype=torch.long, device=patches.device)
        elif lengths.shape != (batch_size,) or lengths.dtype.is_floating_point or bool(((lengths <= 0) | (lengths > rows)).any()):
            raise ValueError(f"expected integer lengths (B,) = ({batch_size},) in 1..{rows}, got {lengths.tolist()}")
        x = rearrange(patches, "b r c p q -> (b r c) 1 p q")  # (N, 1, P, P), N = B * rows * cols
        x = self.blocks(self.stem(x))  # (N, D, P/2, P/2)
        z = self.project(x.mean(dim=(2, 3)))  # (N, C)
        return rearrange(z, "(b r c) d -> b r c d", b=batch_size, r=rows, c=cols), lengths  # (B, rows, cols, C)


def build_patch_encoder(config: PatchEncoderConfig) -> PatchEncoder:
    return PatchEncoder(patch_size=config.patch_size, channels=config.channels, blocks=config.blocks, latent_size=config.latent_size,
                        norm=config.norm, groups=config.groups)
