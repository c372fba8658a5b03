"""Fashion-MNIST files, the patch grid, and CPC v2's per-patch augmentation.

Shape legend: B batch, H x W image (28 x 28), G grid rows = cols (7), P patch size (8).

Data: Fashion-MNIST (Xiao, Rasul, Vollgraf 2017; Zalando, Expat licence): 60,000 training and
10,000 test photographs of clothing, 28 x 28 greyscale, 10 classes. The Debian package
``dataset-fashion-mnist`` installs the four gzip-compressed idx files under
``/usr/share/datasets/fashion-mnist/``; :func:`read_idx` reads that format (a few lines of
``struct`` and ``numpy``; no extra dependency).

Patch grid (paper, section 3.2: 64 x 64 crops at 32 px overlap on 256 x 256 images -> 7 x 7):
the image is reflect-padded 28 -> 32 (2 pixels on each side; an odd difference puts the
extra pixel at the bottom/right) and cut into 8 x 8 patches every 4 pixels, 50 % overlap,
by ``Tensor.unfold``. Patch (i, j) covers padded rows [4i, 4i + 8) and columns [4j, 4j + 8),
i.e. image rows [4i - 2, 4i + 6) (:func:`patch_origin`).

Augmentation (CPC v2, Henaff et al. 2019): every patch independently gets a crop-and-pad
jitter (its content shifted by up to ``max_shift`` pixels, the vacated border zero), a
brightness offset and a contrast scale around its own mean. Values are not clipped: the
encoder's group norm does not need inputs in [0, 1]. All randomness comes from an explicit
generator.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "CLASS_NAMES", "DEFAULT_ROOT", "DatasetMissing", "INSTALL_HINT", "augment_patches", "grid_size", "load_fashion_mnist",
    "normalise", "patch_grid", "patch_origin", "read_idx",
]

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
INSTALL_HINT = "apt-get install dataset-fashion-mnist"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IDX_TYPES = {0x08: np.uint8}  # the only type the Fashion-MNIST files use


class DatasetMissing(FileNotFoundError):
    """The Fashion-MNIST files are not where we look; the message says how to install them."""


def read_idx(path: str | Path) -> np.ndarray:
    """An idx file (``.gz`` or raw) -> the array it holds, e.g. (N, 28, 28) uint8 or (N,) uint8.

    Format: 2 zero bytes, a type code, the number of dimensions, each dimension as a big-endian
    uint32, then the values in C order. Raises ValueError naming the file when it is truncated,
    too long, or not an idx file.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(f"{path}: not a readable gzip file ({error})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an idx file (bad magic {raw[:4].hex() or 'empty'})")
    code, ndim = raw[2], raw[3]
    if code not in IDX_TYPES:
        raise ValueError(f"{path}: idx type code 0x{code:02x} is not supported (only unsigned bytes, 0x08)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated inside the header ({len(raw)} bytes)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape)) * np.dtype(IDX_TYPES[code]).itemsize
    found = len(raw) - header
    if found != expected:
        what = "truncated" if found < expected else "too long"
        raise ValueError(f"{path}: {what}: header says {'x'.join(map(str, shape))} = {expected} bytes, found {found}")
    return np.frombuffer(raw, dtype=IDX_TYPES[code], offset=header).reshape(shape).copy()  # writable


def load_fashion_mnist(root: str | Path = DEFAULT_ROOT, split: str = "train", *, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """-> images (N, 28, 28) uint8, labels (N,) int64 of the ``train`` (60,000) or ``test`` (10,000) split.

    ``limit`` keeps the first N. Missing files raise :class:`DatasetMissing` with the install line.
    """
    if split not in FILES:
        raise ValueError(f"split={split!r}: expected one of {sorted(FILES)}")
    paths = [Path(root) / name for name in FILES[split]]
    for path in paths:
        if not path.is_file():
            raise DatasetMissing(f"Fashion-MNIST not found: {path} is missing (install it with: {INSTALL_HINT})")
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{paths[0]} holds {images.shape} images but {paths[1]} holds {labels.shape} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{paths[1]}: label {labels.max()} is not one of the 10 classes")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images, labels.astype(np.int64)


def normalise(images: np.ndarray | Tensor) -> Tensor:
    """uint8 images -> float32 in [0, 1], same shape."""
    return torch.as_tensor(images).float() / 255


def grid_size(padded_size: int = 32, patch_size: int = 8, stride: int = 4) -> int:
    """Patches per row (and per column): (padded_size - patch_size) / stride + 1 = 7 by default."""
    if padded_size < patch_size or (padded_size - patch_size) % stride:
        raise ValueError(f"padded_size={padded_size} does not fit whole {patch_size}-pixel patches every {stride} pixels")
    return (padded_size - patch_size) // stride + 1


def patch_origin(row: int, col: int, *, image_size: int = 28, padded_size: int = 32, stride: int = 4) -> tuple[int, int]:
    """Top-left pixel of patch (row, col) in the *original* image's coordinates (-2 for the first patch)."""
    border = (padded_size - image_size) // 2
    return row * stride - border, col * stride - border


def patch_grid(images: Tensor, *, padded_size: int = 32, patch_size: int = 8, stride: int = 4) -> Tensor:
    """images (B, H, W) float -> patches (B, G, G, P, P): reflect-pad to padded_size, then cut patches."""
    if images.dim() != 3:
        raise ValueError(f"expected images of shape (B, H, W), got {tuple(images.shape)}")
    height, width = images.shape[1:]
    if padded_size < max(height, width):
        raise ValueError(f"padded_size={padded_size} is smaller than the images, {tuple(images.shape)}")
    grid_size(padded_size, patch_size, stride)  # checks the geometry
    top, left = (padded_size - height) // 2, (padded_size - width) // 2
    padding = (left, padded_size - width - left, top, padded_size - height - top)  # (left, right, top, bottom)
    padded = F.pad(images[:, None], padding, mode="reflect")[:, 0]  # (B, 32, 32)
    return padded.unfold(1, patch_size, stride).unfold(2, patch_size, stride)  # (B, G, G, P, P)


def augment_patches(patches: Tensor, generator: torch.Generator, *, max_shift: int = 2, brightness: float = 0.4, contrast: float = 0.4) -> Tensor:
    """CPC v2's per-patch augmentation: (B, G, G, P, P) -> the same shape, each patch jittered independently.

    1. crop-and-pad jitter: content shifted by (dy, dx), each uniform in [-max_shift, max_shift],
       zeros where it left (pad by max_shift, take a P x P crop at a random offset);
    2. brightness: + u, u uniform in [-brightness, brightness];
    3. contrast: mean + s * (x - mean), s uniform in [1 - contrast, 1 + contrast], mean over the patch.
    """
    if patches.dim() != 5 or patches.shape[-1] != patches.shape[-2]:
        raise ValueError(f"expected patches of shape (B, G, G, P, P), got {tuple(patches.shape)}")
    size = patches.shape[-1]
    flat = patches.reshape(-1, size, size)  # (M, P, P), M = B * G * G
    count = len(flat)
    if max_shift > 0:
        padded = F.pad(flat, (max_shift,) * 4)  # (M, P + 2s, P + 2s)
        shifts = torch.randint(0, 2 * max_shift + 1, (count, 2), generator=generator)  # crop corner in the padded patch
        rows = (shifts[:, 0, None] + torch.arange(size))[:, :, None]  # (M, P, 1)
        cols = (shifts[:, 1, None] + torch.arange(size))[:, None, :]  # (M, 1, P)
        flat = padded[torch.arange(count)[:, None, None], rows, cols]  # (M, P, P)
    if brightness > 0:
        flat = flat + (torch.rand(count, 1, 1, generator=generator) * 2 - 1) * brightness
    if contrast > 0:
        mean = flat.mean(dim=(1, 2), keepdim=True)
        flat = mean + (1 + (torch.rand(count, 1, 1, generator=generator) * 2 - 1) * contrast) * (flat - mean)
    return flat.reshape(patches.shape)
