"""Fashion-MNIST files, the patch grid's geometry and the per-patch augmentation."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from cpc.image.data import (
    CLASS_NAMES,
    DEFAULT_ROOT,
    INSTALL_HINT,
    DatasetMissing,
    augment_patches,
    grid_size,
    load_fashion_mnist,
    normalise,
    patch_grid,
    patch_origin,
    read_idx,
)

INSTALLED = (Path(DEFAULT_ROOT) / "train-images-idx3-ubyte.gz").is_file()


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    return (
        bytes([0, 0, code, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.astype(np.uint8).tobytes()
    )


def write_split(root: Path, images: np.ndarray, labels: np.ndarray, split: str = "train") -> None:
    prefix = "train" if split == "train" else "t10k"
    (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))


def test_idx_round_trip_gzip_and_raw(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.arange(5, dtype=np.uint8)
    for name, array in [("images", images), ("labels", labels)]:
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(array)))
        (tmp_path / name).write_bytes(idx_bytes(array))
        for path in (tmp_path / f"{name}.gz", tmp_path / name):
            read = read_idx(path)
            assert read.dtype == np.uint8 and read.shape == array.shape
            np.testing.assert_array_equal(read, array)


def test_bad_idx_files_are_named_in_one_line(tmp_path):
    data = idx_bytes(np.random.default_rng(0).integers(0, 256, (10, 28, 28)))
    cases = {
        "cut.gz": (gzip.compress(data)[:-200], r"cut\.gz: truncated"),  # a download cut short
        "short": (data[:-100], r"short: truncated: header says 10x28x28 = 7840 bytes, found 7740"),
        "header": (data[:10], r"header: truncated inside the header"),
        "long": (data + b"x", r"long: too long: header says 10x28x28 = 7840 bytes, found 7841"),
        "magic": (b"\x01\x02" + data[2:], r"magic: not an idx file \(bad magic 0102"),
        "float": (idx_bytes(np.zeros(3), code=0x0D), r"float: idx type code 0x0d is not supported"),
        "garbage.gz": (b"not gzip at all", r"garbage\.gz: not a readable gzip file"),
    }
    for name, (content, pattern) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=pattern) as error:
            read_idx(tmp_path / name)
        assert "\n" not in str(error.value)


def test_missing_dataset_says_how_to_install(tmp_path):
    with pytest.raises(DatasetMissing) as error:
        load_fashion_mnist(tmp_path / "nowhere", "train")
    message = str(error.value)
    assert str(tmp_path / "nowhere" / "train-images-idx3-ubyte.gz") in message
    assert f"install it with: {INSTALL_HINT}" in message and INSTALL_HINT == "apt-get install dataset-fashion-mnist"
    assert "\n" not in message and isinstance(error.value, FileNotFoundError)
    with pytest.raises(ValueError, match="split='valid'"):
        load_fashion_mnist(tmp_path, "valid")


def test_load_checks_counts_labels_and_limit(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    write_split(tmp_path, images, np.array([0, 1, 2, 9, 4, 5]))
    loaded, labels = load_fashion_mnist(tmp_path, "train", limit=4)
    np.testing.assert_array_equal(loaded, images[:4])
    assert labels.dtype == np.int64 and labels.tolist() == [0, 1, 2, 9]
    with pytest.raises(ValueError, match="limit=-1"):
        load_fashion_mnist(tmp_path, "train", limit=-1)
    write_split(tmp_path, images, np.arange(5), split="test")
    with pytest.raises(
        ValueError,
        match=r"t10k-images-idx3-ubyte\.gz holds \(6, 28, 28\) images but .*t10k-labels-idx1-ubyte\.gz holds \(5,\)",
    ):
        load_fashion_mnist(tmp_path, "test")
    write_split(tmp_path, images, np.array([0, 1, 2, 10, 4, 5]))
    with pytest.raises(ValueError, match="label 10 is not one of the 10 classes"):
        load_fashion_mnist(tmp_path, "train")


def test_the_installed_test_split():
    if not INSTALLED:
        pytest.skip(f"Fashion-MNIST is not installed under {DEFAULT_ROOT} ({INSTALL_HINT})")
    images, labels = load_fashion_mnist(split="test", limit=100)
    assert images.shape == (100, 28, 28) and images.dtype == np.uint8 and labels.shape == (100,)
    assert labels.min() >= 0 and labels.max() <= 9
    images, labels = load_fashion_mnist(split="test")
    assert images.shape == (10000, 28, 28) and labels.dtype == np.int64
    assert np.bincount(labels, minlength=10).tolist() == [1000] * 10 and len(CLASS_NAMES) == 10


def test_normalise():
    images = np.array([[[0, 51, 255]]], dtype=np.uint8)
    for given in (images, torch.from_numpy(images)):
        out = normalise(given)
        assert out.dtype == torch.float32 and out.shape == (1, 1, 3)
        torch.testing.assert_close(out, torch.tensor([[[0.0, 0.2, 1.0]]]))


def test_patch_grid_covers_the_reflect_padded_pixels():
    images = torch.rand(2, 28, 28, generator=torch.Generator().manual_seed(0))
    patches = patch_grid(images)
    assert patches.shape == (2, 7, 7, 8, 8) and grid_size(32, 8, 4) == 7
    padded = np.pad(images.numpy(), ((0, 0), (2, 2), (2, 2)), mode="reflect")  # independent of torch
    for i in range(7):
        for j in range(7):
            np.testing.assert_array_equal(patches[:, i, j].numpy(), padded[:, 4 * i : 4 * i + 8, 4 * j : 4 * j + 8])
            row, col = patch_origin(i, j)
            assert (row, col) == (4 * i - 2, 4 * j - 2)
            for r in range(8):
                for c in range(8):
                    if 0 <= row + r < 28 and 0 <= col + c < 28:
                        assert patches[0, i, j, r, c] == images[0, row + r, col + c]
    assert patch_origin(0, 0) == (-2, -2) and patch_origin(6, 6) == (22, 22)
    # 50 % overlap: neighbours share exactly 4 rows (down) or 4 columns (right), no more.
    torch.testing.assert_close(patches[:, :-1, :, 4:], patches[:, 1:, :, :4])
    torch.testing.assert_close(patches[:, :, :-1, :, 4:], patches[:, :, 1:, :, :4])
    assert not torch.equal(patches[:, :-1, :, 3:7], patches[:, 1:, :, :4])
    # Interior patches (1..5) lie inside the image: each is a plain slice of it.
    for i in range(1, 6):
        for j in range(1, 6):
            assert torch.equal(patches[:, i, j], images[:, 4 * i - 2 : 4 * i + 6, 4 * j - 2 : 4 * j + 6])


def test_odd_padding_puts_the_extra_pixel_bottom_right():
    images = torch.rand(1, 27, 27, generator=torch.Generator().manual_seed(2))
    patches = patch_grid(images)
    padded = np.pad(images.numpy(), ((0, 0), (2, 3), (2, 3)), mode="reflect")
    np.testing.assert_array_equal(patches[:, 6, 6].numpy(), padded[:, 24:32, 24:32])
    assert patch_origin(1, 1, image_size=27) == (2, 2)


def test_patch_grid_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, H, W\), got \(2, 1, 28, 28\)"):
        patch_grid(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"padded_size=24 is smaller than the images, \(2, 28, 28\)"):
        patch_grid(torch.rand(2, 28, 28), padded_size=24)
    with pytest.raises(
        ValueError, match=r"padded_size=33 does not fit whole 8-pixel patches every 4 pixels \(images \(2, 28, 28\)\)"
    ):
        patch_grid(torch.rand(2, 28, 28), padded_size=33)
    with pytest.raises(ValueError, match=r"reflect padding .* \(2, 3, 3\)"):
        patch_grid(torch.rand(2, 3, 3), padded_size=12)
    with pytest.raises(ValueError, match=r"torch.uint8 of shape \(2, 28, 28\)"):
        patch_grid(torch.zeros(2, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match="stride=0"):
        grid_size(32, 8, 0)


def shift(patch: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Content moved down dy and right dx, zeros where it left (the reference for the jitter)."""
    size = patch.shape[-1]
    out = torch.zeros_like(patch)
    out[max(dy, 0) : size + min(dy, 0), max(dx, 0) : size + min(dx, 0)] = patch[
        max(-dy, 0) : size + min(-dy, 0), max(-dx, 0) : size + min(-dx, 0)
    ]
    return out


def test_augmentation_is_reproducible_and_leaves_the_global_rng_alone():
    patches = patch_grid(torch.rand(3, 28, 28, generator=torch.Generator().manual_seed(1)))
    state = torch.get_rng_state()
    assert torch.equal(augment_patches(patches, torch.Generator(), max_shift=0, brightness=0, contrast=0), patches)
    a = augment_patches(patches, torch.Generator().manual_seed(5))
    assert torch.equal(a, augment_patches(patches, torch.Generator().manual_seed(5))) and a.shape == patches.shape
    assert not torch.equal(a, augment_patches(patches, torch.Generator().manual_seed(6)))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    with pytest.raises(ValueError, match=r"\(B, G, G, P, P\), got \(3, 49, 8, 8\)"):
        augment_patches(patches.reshape(3, 49, 8, 8), torch.Generator())
    with pytest.raises(ValueError, match="max_shift=-1"):
        augment_patches(patches, torch.Generator(), max_shift=-1)


def test_jitter_is_a_zero_filled_shift_within_range():
    distinct = torch.arange(1.0, 65.0).reshape(8, 8)  # no zeros, all different: each shift is recognisable
    patches = distinct.expand(2, 7, 7, 8, 8).contiguous()
    shifted = augment_patches(patches, torch.Generator().manual_seed(0), brightness=0, contrast=0).reshape(-1, 8, 8)
    seen = set()
    for patch in shifted:
        matches = [
            (dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(patch, shift(distinct, dy, dx))
        ]
        assert len(matches) == 1, "each patch is exactly one shift of its input"
        seen.add(matches[0])
    assert len(seen) == 25  # 98 patches reach all 25 shifts


def test_brightness_and_contrast_per_patch():
    patches = patch_grid(torch.rand(3, 28, 28, generator=torch.Generator().manual_seed(1)))
    flat = patches.reshape(-1, 64)
    # Brightness only: one constant offset per patch, within [-0.4, 0.4], different between patches.
    offsets = (
        augment_patches(patches, torch.Generator().manual_seed(0), max_shift=0, brightness=0.4, contrast=0) - patches
    ).reshape(-1, 64)
    torch.testing.assert_close(offsets, offsets[:, :1].expand_as(offsets))
    assert offsets.abs().max() <= 0.4 and offsets[:, 0].unique().numel() > 100
    # Contrast only: the patch mean is kept and every deviation is scaled by one factor in [0.6, 1.4].
    contrasted = augment_patches(
        patches, torch.Generator().manual_seed(0), max_shift=0, brightness=0, contrast=0.4
    ).reshape(-1, 64)
    torch.testing.assert_close(contrasted.mean(1), flat.mean(1))
    scale = (contrasted - contrasted.mean(1, keepdim=True)) / (flat - flat.mean(1, keepdim=True))
    torch.testing.assert_close(scale, scale[:, :1].expand_as(scale), rtol=1e-3, atol=1e-3)
    assert ((scale[:, 0] >= 0.6 - 1e-4) & (scale[:, 0] <= 1.4 + 1e-4)).all()
