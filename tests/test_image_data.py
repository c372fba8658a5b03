"""Fashion-MNIST files, the patch grid's geometry and the per-patch augmentation."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from cpc.image.data import (
    DEFAULT_ROOT, INSTALL_HINT, DatasetMissing, augment_patches, load_fashion_mnist, patch_grid, patch_origin, read_idx,
)


def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def test_idx_round_trip_gzip_and_raw(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.arange(5, dtype=np.uint8)
    (tmp_path / "x-images.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (tmp_path / "x-labels").write_bytes(idx_bytes(labels))
    np.testing.assert_array_equal(read_idx(tmp_path / "x-images.gz"), images)
    np.testing.assert_array_equal(read_idx(tmp_path / "x-labels"), labels)


def test_bad_idx_files_are_named(tmp_path):
    data = idx_bytes(np.zeros((10, 28, 28), np.uint8))
    cut = tmp_path / "cut.gz"
    compressed = gzip.compress(idx_bytes(np.random.default_rng(0).integers(0, 256, (10, 28, 28))))
    cut.write_bytes(compressed[: len(compressed) // 2])  # a download cut short
    with pytest.raises(ValueError, match="cut.gz"):
        read_idx(cut)
    short = tmp_path / "short"
    short.write_bytes(data[:-100])
    with pytest.raises(ValueError, match=r"short: truncated: header says 10x28x28 = 7840 bytes, found 7740"):
        read_idx(short)
    long = tmp_path / "long"
    long.write_bytes(data + b"x")
    with pytest.raises(ValueError, match="long: too long"):
        read_idx(long)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02" + data[2:])
    with pytest.raises(ValueError, match="bad: not an idx file"):
        read_idx(bad)


def test_missing_dataset_says_how_to_install(tmp_path):
    with pytest.raises(DatasetMissing) as error:
        load_fashion_mnist(tmp_path / "nowhere", "train")
    message = str(error.value)
    assert "nowhere" in message and INSTALL_HINT in message and "\n" not in message
    with pytest.raises(ValueError, match="split='valid'"):
        load_fashion_mnist(tmp_path, "valid")


@pytest.mark.skipif(not (Path(DEFAULT_ROOT) / "t10k-images-idx3-ubyte.gz").is_file(), reason=f"Fashion-MNIST is not installed ({INSTALL_HINT})")
def test_the_installed_test_split():
    images, labels = load_fashion_mnist(split="test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000] * 10


def test_patch_grid_covers_the_reflect_padded_pixels():
    images = torch.rand(2, 28, 28, generator=torch.Generator().manual_seed(0))
    patches = patch_grid(images)
    assert patches.shape == (2, 7, 7, 8, 8)
    padded = np.pad(images.numpy(), ((0, 0), (2, 2), (2, 2)), mode="reflect")  # independent of torch
    for i in range(7):
        for j in range(7):
            np.testing.assert_array_equal(patches[:, i, j].numpy(), padded[:, 4 * i : 4 * i + 8, 4 * j : 4 * j + 8])
            row, col = patch_origin(i, j)
            for r in range(8):
                for c in range(8):
                    if 0 <= row + r < 28 and 0 <= col + c < 28:
                        assert patches[0, i, j, r, c] == images[0, row + r, col + c]
    assert patch_origin(0, 0) == (-2, -2) and patch_origin(6, 6) == (22, 22)
    torch.testing.assert_close(patches[:, 0, :, 4:], patches[:, 1, :, :4])  # 50 % overlap: 4 shared rows


def test_patch_grid_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, H, W\), got \(2, 1, 28, 28\)"):
        patch_grid(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match="padded_size=24 is smaller"):
        patch_grid(torch.rand(2, 28, 28), padded_size=24)
    with pytest.raises(ValueError, match="padded_size=33 does not fit"):
        patch_grid(torch.rand(2, 28, 28), padded_size=33)


def test_augmentation():
    patches = patch_grid(torch.rand(3, 28, 28, generator=torch.Generator().manual_seed(1)))
    state = torch.get_rng_state()
    assert torch.equal(augment_patches(patches, torch.Generator(), max_shift=0, brightness=0, contrast=0), patches)
    a = augment_patches(patches, torch.Generator().manual_seed(5))
    assert torch.equal(a, augment_patches(patches, torch.Generator().manual_seed(5))) and a.shape == patches.shape
    assert not torch.equal(a, augment_patches(patches, torch.Generator().manual_seed(6)))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched

    # Jitter only: each patch is its input shifted by some (dy, dx) in [-2, 2]^2, zeros where it left.
    distinct = torch.arange(64.0).reshape(1, 1, 1, 8, 8).expand(1, 7, 7, 8, 8).contiguous() + 1
    shifted = augment_patches(distinct, torch.Generator().manual_seed(0), brightness=0, contrast=0).reshape(-1, 8, 8)
    seen = set()
    for patch in shifted:
        matches = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                expected = torch.zeros(8, 8)
                source = distinct[0, 0, 0]
                expected[max(dy, 0) : 8 + min(dy, 0), max(dx, 0) : 8 + min(dx, 0)] = source[max(-dy, 0) : 8 + min(-dy, 0), max(-dx, 0) : 8 + min(-dx, 0)]
                if torch.equal(patch, expected):
                    matches.append((dy, dx))
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 10  # the 49 patches got many different shifts

    # Brightness only: a constant offset per patch, within bounds. Contrast only: mean kept, one scale per patch.
    bright = augment_patches(patches, torch.Generator().manual_seed(0), max_shift=0, brightness=0.4, contrast=0) - patches
    offsets = bright.reshape(-1, 64)
    torch.testing.assert_close(offsets, offsets[:, :1].expand_as(offsets))
    assert offsets.abs().max() <= 0.4
    contrasted = augment_patches(patches, torch.Generator().manual_seed(0), max_shift=0, brightness=0, contrast=0.4).reshape(-1, 64)
    flat = patches.reshape(-1, 64)
    torch.testing.assert_close(contrasted.mean(1), flat.mean(1))
    scale = (contrasted - contrasted.mean(1, keepdim=True)) / (flat - flat.mean(1, keepdim=True))
    torch.testing.assert_close(scale, scale[:, :1].expand_as(scale), rtol=1e-3, atol=1e-3)
    assert ((scale[:, 0] >= 0.6 - 1e-4) & (scale[:, 0] <= 1.4 + 1e-4)).all()
