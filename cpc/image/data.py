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
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_ROOT",
    "DatasetMissing",
    "INSTALL_HINT",
    "augment_patches",
    "grid_size",
    "load_fashion_mnist",
    "normalise",
    "patch_grid",
    "patch_origin",
    "read_idx",
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

    Format: 2 zero bytes, a type code (0x08 = unsigned byte, the only one Fashion-MNIST uses),
    the number of dimensions, each dimension as a big-endian uint32, then the values in C order.
    Raises ValueError, one line naming the file, when it is not an idx file, has another type
    code, is truncated (a cut download: the gzip stream ends early) or has bytes past the data.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    except EOFError:  # gzip stream ends before its end-of-stream marker
        raise ValueError(f"{path}: truncated: the gzip stream ends early (a cut download?)") from None
    except (gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(f"{path}: not a readable gzip file ({error})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path}: not an idx file (bad magic {raw[:4].hex() or 'empty'}, expected 0000 then type and ndim)"
        )
    code, ndim = raw[2], raw[3]
    if code not in IDX_TYPES:
        raise ValueError(f"{path}: idx type code 0x{code:02x} is not supported (only unsigned bytes, 0x08)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"{path}: truncated inside the header: {ndim} dimensions need {header} bytes, found {len(raw)}"
        )
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(shape) * np.dtype(IDX_TYPES[code]).itemsize
    found = len(raw) - header
    if found != expected:
        what = "truncated" if found < expected else "too long"
        raise ValueError(f"{path}: {what}: header says {'x'.join(map(str, shape))} = {expected} bytes, found {found}")
    return np.frombuffer(raw, dtype=IDX_TYPES[code], offset=header).reshape(shape).copy()  # writable


def load_fashion_mnist(
    root: str | Path = DEFAULT_ROOT, split: str = "train", *, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """-> images (N, 28, 28) uint8, labels (N,) int64 of the ``train`` (60,000) or ``test`` (10,000) split.

    ``limit`` keeps the first N (the whole file is still read: 47 MB for train). Nothing is
    cached between calls. Missing files raise :class:`DatasetMissing` with the install line;
    images and labels that disagree in count, or labels outside 0..9, raise ValueError.
    """
    if split not in FILES:
        raise ValueError(f"split={split!r}: expected one of {sorted(FILES)}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit={limit}: expected None or a count >= 0")
    paths = [Path(root) / name for name in FILES[split]]
    for path in paths:
        if not path.is_file():
            raise DatasetMissing(f"Fashion-MNIST not found: {path} is missing (install it with: {INSTALL_HINT})")
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{paths[0]} holds {images.shape} images but {paths[1]} holds {labels.shape} labels")
    if labels.size and labels.max() >= len(CLASS_NAMES):
        raise ValueError(f"{paths[1]}: label {labels.max()} is not one of the {len(CLASS_NAMES)} classes")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images, labels.astype(np.int64)


def normalise(images: np.ndarray | Tensor) -> Tensor:
    """uint8 images -> float32 in [0, 1], same shape."""
    return torch.as_tensor(images).float() / 255


def grid_size(padded_size: int = 32, patch_size: int = 8, stride: int = 4) -> int:
    """Patches per row (and per column): G = (padded_size - patch_size) / stride + 1 = 7 by default."""
    if patch_size < 1 or stride < 1:
        raise ValueError(f"patch_size={patch_size} and stride={stride} must both be >= 1")
    if padded_size < patch_size or (padded_size - patch_size) % stride:
        raise ValueError(
            f"padded_size={padded_size} does not fit whole {patch_size}-pixel patches every {stride} pixels"
        )
    return (padded_size - patch_size) // stride + 1


def patch_origin(
    row: int, col: int, *, image_size: int = 28, padded_size: int = 32, stride: int = 4
) -> tuple[int, int]:
    """Top-left pixel of patch (row, col) in the *original* image's coordinates: (-2, -2) for (0, 0), (22, 22) for (6, 6).

    Negative (or >= image_size - patch_size) where the patch reaches into the reflected border.
    """
    border = (padded_size - image_size) // 2  # top/left padding; an odd extra pixel goes bottom/right
    return row * stride - border, col * stride - border


def patch_grid(images: Tensor, *, padded_size: int = 32, patch_size: int = 8, stride: int = 4) -> Tensor:
    """images (B, H, W) float -> patches (B, G, G, P, P), G = grid_size(padded_size, patch_size, stride).

    The images are reflect-padded to padded_size x padded_size ((padded_size - H) // 2 rows on
    top, the rest at the bottom; the same for columns), then cut by ``Tensor.unfold``: patch
    (i, j) is padded rows [i * stride, i * stride + P) x columns [j * stride, j * stride + P).
    The result is a view of the padded batch (no copy).
    """
    if images.dim() != 3:
        raise ValueError(f"expected images of shape (B, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"expected float images (see normalise), got {images.dtype} of shape {tuple(images.shape)}")
    height, width = images.shape[1:]
    if padded_size < max(height, width):
        raise ValueError(f"padded_size={padded_size} is smaller than the images, {tuple(images.shape)}")
    try:
        grid_size(padded_size, patch_size, stride)
    except ValueError as error:
        raise ValueError(f"{error} (images {tuple(images.shape)})") from None
    top, left = (padded_size - height) // 2, (padded_size - width) // 2
    bottom, right = padded_size - height - top, padded_size - width - left
    if max(top, bottom) >= height or max(left, right) >= width:  # reflection mirrors at most H - 1 pixels
        raise ValueError(
            f"padded_size={padded_size}: reflect padding needs a border smaller than the images, {tuple(images.shape)}"
        )
    padded = F.pad(images[:, None], (left, right, top, bottom), mode="reflect")[:, 0]  # (B, padded, padded)
    return padded.unfold(1, patch_size, stride).unfold(2, patch_size, stride)  # (B, G, G, P, P)


def augment_patches(
    patches: Tensor, generator: torch.Generator, *, max_shift: int = 2, brightness: float = 0.4, contrast: float = 0.4
) -> Tensor:
    """CPC v2's per-patch augmentation: (B, G, G, P, P) -> the same shape, each patch jittered independently.

    1. crop-and-pad jitter: content shifted by (dy, dx), each uniform in [-max_shift, max_shift],
       zeros where it left (pad by max_shift, take a P x P crop at a random offset);
    2. brightness: + u, u uniform in [-brightness, brightness];
    3. contrast: mean + s * (x - mean), s uniform in [1 - contrast, 1 + contrast], mean over the patch.

    Values are not clipped to [0, 1]. All draws come from ``generator`` (a CPU generator; the
    global RNG is not touched), so the same seed gives the same output; all settings 0 returns
    the input's values unchanged.
    """
    if patches.dim() != 5 or patches.shape[-1] != patches.shape[-2]:
        raise ValueError(f"expected patches of shape (B, G, G, P, P), got {tuple(patches.shape)}")
    if max_shift < 0 or brightness < 0 or contrast < 0:
        raise ValueError(f"max_shift={max_shift}, brightness={brightness}, contrast={contrast}: expected values >= 0")
    size, device = patches.shape[-1], patches.device
    flat = patches.reshape(-1, size, size)  # (M, P, P), M = B * G * G
    count = len(flat)
    if max_shift > 0:
        padded = F.pad(flat, (max_shift,) * 4)  # (M, P + 2s, P + 2s)
        # Crop corner in the padded patch, in [0, 2s]: content moves by (s - corner), i.e. in [-s, s].
        corners = torch.randint(0, 2 * max_shift + 1, (count, 2), generator=generator).to(device)  # (M, 2)
        rows = (corners[:, 0, None] + torch.arange(size, device=device))[:, :, None]  # (M, P, 1)
        cols = (corners[:, 1, None] + torch.arange(size, device=device))[:, None, :]  # (M, 1, P)
        flat = padded[torch.arange(count, device=device)[:, None, None], rows, cols]  # (M, P, P)
    if brightness > 0:
        offset = (torch.rand(count, 1, 1, generator=generator) * 2 - 1) * brightness  # (M, 1, 1) in [-b, b]
        flat = flat + offset.to(device)
    if contrast > 0:
        scale = 1 + (torch.rand(count, 1, 1, generator=generator) * 2 - 1) * contrast  # (M, 1, 1) in [1 - c, 1 + c]
        mean = flat.mean(dim=(1, 2), keepdim=True)  # (M, 1, 1)
        flat = mean + scale.to(device) * (flat - mean)
    return flat.reshape(patches.shape)
