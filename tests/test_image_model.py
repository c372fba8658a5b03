"""The patch encoder and the image context networks: configs, shapes and errors, independence of
patches, row causality and the exact receptive field of the masked convolution, gradients.

Shape legend: B batch, G grid rows = cols (7), P patch size (8), C latent size, H context size.
Models are tiny (8 channels) so the whole file runs in seconds on one CPU thread.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from cpc.image.context import (
    MaskedConvContext,
    MaskedConvContextConfig,
    RowGRUContext,
    RowGRUContextConfig,
    build_masked_conv_context,
    build_row_gru_context,
)
from cpc.image.encoder import PatchEncoder, PatchEncoderConfig, build_patch_encoder

B, G, P, C, H = 2, 7, 8, 8, 8


def perturbed(module: torch.nn.Module, seed: int = 3) -> torch.nn.Module:
    """Norm affines and biases (every 1-D parameter) moved away from their initial 1 / 0, so no test passes by symmetry."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.dim() == 1:
                parameter.add_(0.5 * torch.randn(parameter.shape, generator=generator))
    return module


def tiny_encoder(**overrides) -> PatchEncoder:
    torch.manual_seed(0)
    return perturbed(PatchEncoder(**{"channels": 8, "latent_size": C, "groups": 4, **overrides}))


def tiny_context(name: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    cls = {"masked_conv": MaskedConvContext, "row_gru": RowGRUContext}[name]
    return perturbed(cls(input_size=C, hidden_size=H, **overrides))


CONTEXTS = {  # id -> (network, overrides); the kernel-5 variant checks that the padding follows k
    "masked_conv": ("masked_conv", {}),
    "masked_conv-k5-none": ("masked_conv", {"kernel_size": 5, "layers": 2, "norm": "none"}),
    "row_gru": ("row_gru", {}),
}


def changed(after: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
    """(B, G1, G2, D) pair -> (B, G1, G2) bool: where some channel moved by more than float noise."""
    return (after - before).abs().amax(dim=-1) > 1e-6


# --- configs and builders ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config_class", "key"),
    [(PatchEncoderConfig, "patch_resnet"), (MaskedConvContextConfig, "masked_conv"), (RowGRUContextConfig, "row_gru")],
)
def test_configs_are_plain_dataclasses_named_by_their_registry_key(config_class, key):
    fields = dataclasses.fields(config_class)
    assert fields[0].name == "name" and fields[0].default == key
    for field in fields:  # structured-config friendly: plain scalar types, every field with a default
        assert field.type in ("int", "float", "str", "bool", int, float, str, bool), field
        assert field.default is not dataclasses.MISSING, field


def test_builders_follow_the_config():
    encoder = build_patch_encoder(PatchEncoderConfig(channels=8, latent_size=6, groups=2, blocks=3))
    assert isinstance(encoder, PatchEncoder) and encoder.output_size == 6 and encoder.patch_size == 8
    assert len(encoder.blocks) == 3 and encoder.stem[1].num_groups == 2
    context = build_masked_conv_context(
        MaskedConvContextConfig(hidden_size=5, layers=2, kernel_size=5), encoder.output_size
    )
    assert isinstance(context, MaskedConvContext) and context.output_size == 5 and len(context.convs) == 2
    assert context.receptive_field == (9, 9)
    assert MaskedConvContext(input_size=C).receptive_field == (
        7,
        7,
    )  # defaults: the 6 rows above, 3 columns either side
    gru = build_row_gru_context(RowGRUContextConfig(hidden_size=5), 6)
    assert isinstance(gru, RowGRUContext) and gru.output_size == 5
    latents, _ = encoder(torch.rand(B, G, G, P, P))
    assert context(latents)[0].shape == gru(latents)[0].shape == (B, G, G, 5)


# --- encoder: shapes, errors, independence -----------------------------------------------------


@pytest.mark.parametrize("norm", ["group", "layer", "none"])
def test_encoder_shapes_and_lengths(norm):
    encoder = tiny_encoder(norm=norm)
    latents, lengths = encoder(torch.rand(B, G, G, P, P))
    assert latents.shape == (B, G, G, C) and latents.dtype == torch.float32
    assert lengths.dtype == torch.long and lengths.tolist() == [G, G]
    # grids need not be square; int32 lengths come back as long
    latents, lengths = encoder(torch.rand(B, 5, 6, P, P), torch.tensor([3, 5], dtype=torch.int32))
    assert latents.shape == (B, 5, 6, C) and lengths.dtype == torch.long and lengths.tolist() == [3, 5]
    assert encoder.output_lengths(torch.tensor([3, 5])).tolist() == [3, 5]


@pytest.mark.parametrize("shape", [(2, 7, 7, 6, 6), (7, 7, 8, 8), (2, 7, 7, 8, 6), (2, 7, 7, 64), (2, 1, 7, 7, 8, 8)])
def test_encoder_rejects_bad_patch_shapes(shape):
    with pytest.raises(ValueError, match=re.escape(f"expected patches of shape (B, rows, cols, 8, 8), got {shape}")):
        tiny_encoder()(torch.rand(shape))


@pytest.mark.parametrize(
    ("lengths", "message"),
    [
        (torch.tensor([7.0, 7.0]), "integer tensor.*torch.float32"),
        (torch.tensor([True, True]), "integer tensor.*torch.bool"),
        ([7, 7], "integer tensor.*list"),
        (torch.tensor([7, 7, 7]), re.escape("(B,) = (2,), got (3,)")),
        (torch.tensor([[7, 7]]), re.escape("(B,) = (2,), got (1, 2)")),
        (torch.tensor([7, 0]), re.escape("lengths[1] = 0") + ".*0 < length <= 7"),
        (torch.tensor([8, 7]), re.escape("lengths[0] = 8") + ".*0 < length <= 7"),
    ],
)
def test_encoder_rejects_bad_lengths(lengths, message):
    with pytest.raises(ValueError, match=message):
        tiny_encoder()(torch.rand(B, G, G, P, P), lengths)


def test_encoder_norm_choices():
    for norm, groups in (("group", 4), ("layer", 1)):  # layer norm = one group over (D, p, p) of a patch
        encoder = PatchEncoder(channels=8, latent_size=C, groups=4, norm=norm)
        norms = [m for m in encoder.modules() if isinstance(m, torch.nn.GroupNorm)]
        assert len(norms) == 1 + 2 * 2 and all(m.num_groups == groups for m in norms)
    plain = PatchEncoder(channels=8, latent_size=C, norm="none")
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in plain.modules())
    assert plain.stem[0].bias is not None  # without a norm the convolutions keep their biases
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in tiny_encoder().modules())
    for norm in ("batch", "channel", "Group"):
        message = f"model.encoder.norm={norm!r}: expected one of ['group', 'layer', 'none']"
        with pytest.raises(ValueError, match=re.escape(message)):
            PatchEncoder(norm=norm)
    with pytest.raises(ValueError, match="model.encoder.channels=8 is not a multiple of model.encoder.groups=3"):
        PatchEncoder(channels=8, groups=3)


@pytest.mark.parametrize("norm", ["group", "layer", "none"])
@pytest.mark.parametrize("mode", ["train", "eval"])  # no batch statistics: the same in both modes
def test_encoder_patches_are_encoded_independently(norm, mode):
    encoder = getattr(tiny_encoder(norm=norm), mode)()
    generator = torch.Generator().manual_seed(0)
    patches = torch.rand(B, G, G, P, P, generator=generator)
    with torch.no_grad():
        before, _ = encoder(patches)
        for b, i, j in [(0, 0, 0), (1, 3, 4), (1, 6, 6), (0, 6, 0)]:
            edited = patches.clone()
            edited[b, i, j] = torch.rand(P, P, generator=generator)
            moved = changed(encoder(edited)[0], before)  # (B, G, G)
            expected = torch.zeros(B, G, G, dtype=torch.bool)
            expected[b, i, j] = True
            assert torch.equal(moved, expected), f"patch {(b, i, j)} changed the latents at {moved.nonzero().tolist()}"
        other_image = patches.clone()
        other_image[1] = torch.rand(G, G, P, P, generator=generator)
        after, _ = encoder(other_image)
    torch.testing.assert_close(after[0], before[0], rtol=0, atol=1e-6)
    assert changed(after, before)[1].all()


# --- context networks: errors, causality, receptive field ---------------------------------------


@pytest.mark.parametrize("name", ["masked_conv", "row_gru"])
def test_context_rejects_bad_inputs(name):
    context = tiny_context(name)
    for shape in [(2, 7, 7), (2, 7, 7, 6), (2, 1, 7, 7, 8)]:
        with pytest.raises(ValueError, match=re.escape(f"expected latents of shape (B, rows, cols, {C}), got {shape}")):
            context(torch.rand(shape))
    with pytest.raises(ValueError, match="hidden=None"):
        context(torch.rand(B, G, G, C), torch.zeros(1, B, H))


def test_masked_conv_rejects_bad_options():
    for kernel_size in (2, 4, 0):
        with pytest.raises(ValueError, match=f"model.context.kernel_size={kernel_size}: expected an odd size"):
            MaskedConvContext(input_size=C, kernel_size=kernel_size)
    with pytest.raises(ValueError, match=re.escape("model.context.norm='batch': expected one of ['layer', 'none']")):
        MaskedConvContext(input_size=C, norm="batch")
    MaskedConvContext(input_size=C, norm="none")  # builds


@pytest.mark.parametrize("variant", list(CONTEXTS))
def test_context_row_r_sees_only_rows_up_to_r(variant):
    name, overrides = CONTEXTS[variant]
    context = tiny_context(name, **overrides)
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(B, G, G, C, generator=generator)
    with torch.no_grad():
        before, hidden = context(latents)
        assert before.shape == (B, G, G, H) and hidden is None
        for row in range(G):
            below = latents.clone()
            below[:, row + 1 :] = torch.randn(B, G - row - 1, G, C, generator=generator)
            after, _ = context(below)
            torch.testing.assert_close(after[:, : row + 1], before[:, : row + 1], rtol=0, atol=1e-6)
            if row + 1 < G:  # the rows below do see the change
                assert changed(after, before)[:, row + 1 :].any()
            here = latents.clone()
            here[:, row] = torch.randn(B, G, C, generator=generator)
            after, _ = context(here)
            # the test can fail: row r does see its own latents
            assert changed(after, before)[:, row].all(), f"{variant}: row {row} does not see its own latents"
            torch.testing.assert_close(after[:, :row], before[:, :row], rtol=0, atol=1e-6)


@pytest.mark.parametrize(("kernel_size", "layers"), [(3, 3), (3, 1), (5, 1), (5, 2), (1, 2)])
def test_masked_conv_sees_exactly_its_receptive_field(kernel_size, layers):
    """One latent changed at (2, 6) of a 13 x 13 grid moves the context exactly on rows 2 .. 2 + reach,
    columns 6 -/+ reach / 2, reach = layers * (k - 1): rows below, columns either side, never above."""
    context = tiny_context("masked_conv", kernel_size=kernel_size, layers=layers)
    rows, cols = context.receptive_field
    assert rows == cols == layers * (kernel_size - 1) + 1
    generator = torch.Generator().manual_seed(2)
    latents = torch.randn(B, 13, 13, C, generator=generator)
    edited = latents.clone()
    edited[:, 2, 6] = torch.randn(B, C, generator=generator)
    with torch.no_grad():
        moved = changed(context(edited)[0], context(latents)[0])  # (B, 13, 13)
    expected = torch.zeros(13, 13, dtype=torch.bool)
    expected[2 : 2 + rows, 6 - (cols - 1) // 2 : 6 + (cols - 1) // 2 + 1] = True
    assert torch.equal(moved, expected.expand(B, 13, 13)), moved[0].int()


def test_context_columns_of_a_row_mix():
    """masked_conv (k = 3, 3 layers): a change at (r, 0) reaches columns 1, 2, 3 of row r, not 4;
    row_gru: every column of row r, through the row mean."""
    generator = torch.Generator().manual_seed(4)
    latents = torch.randn(B, G, G, C, generator=generator)
    for name, reached in (("masked_conv", [0, 1, 2, 3]), ("row_gru", list(range(G)))):
        context = tiny_context(name)
        for row in range(G):
            edited = latents.clone()
            edited[:, row, 0] = torch.randn(B, C, generator=generator)
            with torch.no_grad():
                moved = changed(context(edited)[0], context(latents)[0])[:, row]  # (B, G)
            assert moved.all(dim=0).nonzero().flatten().tolist() == reached, (name, row, moved.int())


# --- gradients ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["masked_conv", "row_gru"])
def test_gradients_reach_every_parameter(name):
    encoder, context = tiny_encoder(), tiny_context(name)
    latents, _ = encoder(torch.rand(B, G, G, P, P))
    context(latents)[0].sum().backward()
    for module in (encoder, context):
        for parameter_name, parameter in module.named_parameters():
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), parameter_name
            assert parameter.grad.abs().sum() > 0, parameter_name
