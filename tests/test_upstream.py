"""The s3prl upstream contract: layers, shapes, exact lengths, padding invariance, downsample rate from the model;
s3prl's own Featurizer when s3prl imports (it is not a dependency)."""

from __future__ import annotations

import pytest
import torch
from conftest import small_config

import cpc
from cpc.checkpoint import save_checkpoint
from cpc.config import to_container
from cpc.upstream import CPCUpstream, UpstreamExpert

LENGTHS = [16000, 12345, 4000, 161]  # 1 s, uneven, short, barely a frame


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("upstream")
    config = small_config(folder)  # encoder 32 channels, GRU 24
    torch.manual_seed(0)
    model = cpc.build_model(config)
    path = folder / "model.pt"
    save_checkpoint(path, {"config": to_container(config), "model": model.state_dict(), "step": 0})
    return path


def waveforms(seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(n, generator=generator) for n in LENGTHS]


def test_hidden_states_shapes_lengths_and_rate(checkpoint):
    upstream = UpstreamExpert(
        ckpt=str(checkpoint), model_config=None, refresh=False
    ).eval()  # as s3prl's runner calls it
    assert isinstance(upstream, CPCUpstream) and isinstance(upstream, torch.nn.Module)
    model = upstream.model
    assert upstream.get_downsample_rates("hidden_states") == model.downsample_rate == 160
    with torch.no_grad():
        out = upstream(waveforms())
    latents, context = out["hidden_states"]
    frames = model.output_lengths(torch.tensor(LENGTHS))
    assert latents.shape == (4, int(frames.max()), 32) and context.shape == (4, int(frames.max()), 24)
    assert out["last_hidden_state"] is context and out["hidden_states_lengths"].tolist() == frames.tolist()
    for row, count in enumerate(frames.tolist()):
        assert count > 0
        assert (latents[row, count:] == 0).all() and (context[row, count:] == 0).all()  # padding masked


def test_each_wav_alone_equals_its_row_of_the_batch(checkpoint):
    upstream = CPCUpstream(checkpoint).eval()
    wavs = waveforms(1)
    with torch.no_grad():
        batch = upstream(wavs)
        for row, wav in enumerate(wavs):
            alone = upstream([wav])
            count = alone["hidden_states_lengths"].item()
            assert alone["hidden_states"][0].shape[1] == count
            for layer in range(2):
                torch.testing.assert_close(
                    batch["hidden_states"][layer][row, :count], alone["hidden_states"][layer][0], atol=1e-5, rtol=0
                )
            # and equals the model's own feature API
            features, _ = upstream.model.extract_features(wav[None], layer="context")
            torch.testing.assert_close(alone["last_hidden_state"], features, atol=1e-6, rtol=0)


def test_gradients_reach_the_model_for_finetuning(checkpoint):
    upstream = CPCUpstream(model=cpc.load(checkpoint)).train()
    upstream(waveforms())["last_hidden_state"].sum().backward()
    assert upstream.model.encoder.blocks[0]["conv"].weight.grad.abs().sum() > 0


def test_bad_input_is_a_value_error_quoting_shapes(checkpoint, tmp_path):
    upstream = CPCUpstream(checkpoint)
    with pytest.raises(ValueError, match=r"shape \(S,\).*\[\(2, 100\)\]"):
        upstream([torch.zeros(2, 100)])
    with pytest.raises(ValueError, match="non-empty list"):
        upstream([])
    with pytest.raises(ValueError, match="too short for one frame"):
        upstream([torch.zeros(8)])
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        CPCUpstream(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="exactly one"):
        CPCUpstream()


def test_s3prl_featurizer_reads_it(checkpoint):
    """s3prl's own Featurizer (s3prl 0.4.18 legacy interface), when s3prl imports: not installed by default."""
    interfaces = pytest.importorskip("s3prl.upstream.interfaces", reason="s3prl is not installed")
    upstream = CPCUpstream(checkpoint).eval()
    wavs = waveforms(2)
    with torch.no_grad():
        out = upstream(wavs)
    # Layers of different sizes (32, 24): select one, as for the paper's model (512, 256).
    featurizer = interfaces.Featurizer(
        upstream, feature_selection="hidden_states", upstream_device="cpu", layer_selection=1
    )
    assert featurizer.downsample_rate == 160 and featurizer.output_dim == 24
    rows = featurizer(wavs, out)
    for row, (features, wav) in enumerate(zip(rows, wavs)):
        expected = min(
            round(len(wav) / 160), out["last_hidden_state"].shape[1]
        )  # s3prl cuts each row to round(S / rate)
        assert features.shape == (expected, 24)
        torch.testing.assert_close(features, out["last_hidden_state"][row, :expected])
    # Equal sizes (the tiny recipe's 128/128): the learned weighted sum over both layers.
    same = cpc.build_model(small_config(".", **{"model.context.hidden_size": 32}))
    upstream = CPCUpstream(model=same).eval()
    featurizer = interfaces.Featurizer(upstream, feature_selection="hidden_states", upstream_device="cpu")
    with torch.no_grad():
        out = upstream(wavs)
        rows = featurizer(wavs, out)
    assert featurizer.layer_num == 2 and rows[0].shape == (100, 32)
    torch.testing.assert_close(rows[0], (out["hidden_states"][0][0, :100] + out["hidden_states"][1][0, :100]) / 2)
