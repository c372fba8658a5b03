"""The patch encoder and the image context networks: shapes, independence of patches, row causality."""

import pytest
import torch

from cpc.image.context import MaskedConvContext, RowGRUContext
from cpc.image.encoder import PatchEncoder


def perturbed(module: torch.nn.Module) -> torch.nn.Module:
    """Norm affines and biases away from their initial 1 / 0, so the tests do not pass by symmetry."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if parameter.dim() == 1:
                parameter.add_(0.5 * torch.randn(parameter.shape, generator=generator))
    return module


@pytest.mark.parametrize("norm", ["group", "layer", "none"])
def test_encoder_shapes_and_patch_independence(norm):
    encoder = perturbed(PatchEncoder(channels=8, latent_size=6, groups=4, norm=norm))
    patches = torch.rand(2, 7, 7, 8, 8, generator=torch.Generator().manual_seed(0))
    for mode in ("train", "eval"):  # no batch statistics: the same in both modes
        getattr(encoder, mode)()
        latents, lengths = encoder(patches)
        assert latents.shape == (2, 7, 7, 6) and lengths.tolist() == [7, 7]
        changed = patches.clone()
        changed[1, 3, 4] = torch.rand(8, 8)
        after, _ = encoder(changed)
        moved = (after - latents).abs().amax(-1) > 0  # (B, G, G)
        assert moved[1, 3, 4] and moved.sum() == 1, f"{norm}/{mode}: a patch changed other latents"


def test_encoder_rejects_bad_input():
    encoder = PatchEncoder(channels=8, latent_size=6, groups=4)
    with pytest.raises(ValueError, match=r"\(B, rows, cols, 8, 8\), got \(2, 7, 7, 6, 6\)"):
        encoder(torch.rand(2, 7, 7, 6, 6))
    with pytest.raises(ValueError, match="lengths"):
        encoder(torch.rand(2, 7, 7, 8, 8), torch.tensor([7, 9]))
    with pytest.raises(ValueError, match=r"model.encoder.norm='batch'.*\['group', 'layer', 'none'\]"):
        PatchEncoder(norm="batch")


@pytest.mark.parametrize("context_class", [MaskedConvContext, RowGRUContext])
def test_context_rows_see_only_rows_above_and_columns_mix(context_class):
    context = perturbed(context_class(6, hidden_size=8))
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 7, 7, 6, generator=generator)
    before, _ = context(latents)
    assert before.shape == (2, 7, 7, 8)
    for row in range(7):
        below = latents.clone()
        below[:, row + 1 :] = torch.randn(2, 6 - row, 7, 6, generator=generator)
        after, _ = context(below)
        torch.testing.assert_close(after[:, : row + 1], before[:, : row + 1], rtol=0, atol=1e-6)
        here = latents.clone()
        here[:, row, 3] += 1.0
        after, _ = context(here)
        assert not torch.allclose(after[:, row, 3], before[:, row, 3])
        assert not torch.allclose(after[:, row, 2], before[:, row, 2]), "columns of a row should mix"
    loss = context(latents)[0].sum()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in context.parameters())


def test_context_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(B, rows, cols, 6\), got \(2, 7, 6\)"):
        MaskedConvContext(6)(torch.rand(2, 7, 6))
    with pytest.raises(ValueError, match="kernel_size=4"):
        MaskedConvContext(6, kernel_size=4)
