"""Model properties users rely on: shapes and lengths, causality, padding invariance."""

import math

import pytest
import torch

import cpc
from cpc.config import load_config


def tiny_model(**overrides):
    settings = {"model.context.hidden_size": 16, "model.predictor.prediction_steps": 3, "model.loss.num_negatives": 4}
    settings.update(overrides)
    layers = (
        "["
        + ",".join(
            f"{{channels: 24, kernel_size: {k}, stride: {s}, padding: {p}}}"
            for k, s, p in [(10, 5, 3), (8, 4, 2), (4, 2, 1), (4, 2, 1), (4, 2, 1)]
        )
        + "]"
    )
    config = load_config(None, [f"model.encoder.layers={layers}"] + [f"{k}={v}" for k, v in settings.items()])
    torch.manual_seed(0)
    return cpc.build_model(config).eval()


def test_paper_model_matches_the_paper():
    model = cpc.build_model(load_config("recipes/speech/paper.yaml"))
    assert model.downsample_rate == 160
    assert model.encoder.receptive_field == 465
    assert sum(p.numel() for p in model.parameters()) == 7_414_784
    assert model.context.rnn.hidden_size == 256 and model.predictors.prediction_steps == 12
    features, lengths = model.extract_features(torch.zeros(1, 20480))
    assert features.shape == (1, 128, 256) and lengths.tolist() == [128]


@pytest.mark.parametrize("num_samples", [400, 465, 1599, 1600, 16000, 20480, 20481])
def test_output_lengths_match_the_convolutions(num_samples):
    model = tiny_model()
    latents, lengths = model.encoder(torch.randn(1, num_samples))
    assert latents.shape[1] == lengths.item() == model.output_lengths(torch.tensor([num_samples])).item()


def test_extract_features_layers_and_errors():
    model = tiny_model()
    waveforms = torch.randn(2, 3200)
    context, lengths = model.extract_features(waveforms, torch.tensor([3200, 1600]))
    encoder, _ = model.extract_features(waveforms, layer="encoder")
    assert context.shape == (2, 20, 16) and encoder.shape == (2, 20, 24) and lengths.tolist() == [20, 10]
    with pytest.raises(ValueError, match="layer"):
        model.extract_features(waveforms, layer="predictor")
    with pytest.raises(ValueError, match=r"\(B, S\).*\(3200,\)"):
        model.extract_features(waveforms[0])


@pytest.mark.parametrize("context", ["gru", "lstm"])
def test_causality(context):
    """Changing samples after frame t's receptive field leaves context features at frames <= t unchanged."""
    model = tiny_model(**{"model.context.name": context})
    rate, lookahead = model.downsample_rate, model.encoder.receptive_field - model.encoder.left_padding
    waveforms = torch.randn(1, 6400)
    t = 17
    changed = waveforms.clone()
    first_free_sample = t * rate + lookahead  # frame t reads samples < t*rate - left_padding + receptive_field
    changed[:, first_free_sample:] = torch.randn(1, 6400 - first_free_sample)
    with torch.no_grad():
        before, _ = model.extract_features(waveforms)
        after, _ = model.extract_features(changed)
    torch.testing.assert_close(before[:, : t + 1], after[:, : t + 1], rtol=0, atol=0)
    assert not torch.allclose(before[:, t + 1 :], after[:, t + 1 :])
    changed[:, first_free_sample - 1] += 1.0  # one sample earlier does reach frame t
    with torch.no_grad():
        touched, _ = model.extract_features(changed)
    assert not torch.equal(touched[:, t], before[:, t])


@pytest.mark.parametrize("norm", ["none", "channel"])
def test_padded_batch_equals_each_sequence_alone(norm):
    model = tiny_model(**{"model.encoder.norm": norm})
    lengths = [3200, 2417, 1000]
    sequences = [torch.randn(n) for n in lengths]
    batch = torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True)
    with torch.no_grad():
        for layer in ("encoder", "context"):
            features, feature_lengths = model.extract_features(batch, torch.tensor(lengths), layer=layer)
            for i, sequence in enumerate(sequences):
                alone, alone_lengths = model.extract_features(sequence[None], layer=layer)
                assert feature_lengths[i] == alone_lengths[0]
                torch.testing.assert_close(features[i, : alone_lengths[0]], alone[0], atol=1e-5, rtol=1e-5)


def test_padding_changes_no_score_of_a_valid_position():
    """Appending padding leaves every score between valid positions, and so every loss term, unchanged."""
    from cpc.infonce import score_candidates
    from cpc.negatives import positive_indices

    model = tiny_model()
    waveforms = torch.randn(2, 3200)
    padded = torch.cat([waveforms, torch.randn(2, 1600)], 1)  # (B, S + 1600), valid lengths 3200

    def scores(batch, lengths):
        latents, latent_lengths = model.encoder(batch, lengths)  # (B, T, C)
        predictions = model.predictors(model.context(latents)[0])  # (B, T, K, C)
        batch_size, num_frames, steps, _ = predictions.shape
        every_frame = torch.arange(batch_size * num_frames).expand(batch_size, num_frames, steps, -1)
        full = score_candidates(
            predictions, latents, every_frame
        )  # (B, T, K, B*T): each prediction against every latent
        valid_frames = torch.arange(num_frames)[None, :] < latent_lengths[:, None]  # (B, T)
        positives, valid = positive_indices(latent_lengths, num_frames, steps)  # (B, T, K)
        positive_scores = full.gather(-1, positives[..., None])[..., 0][valid]  # (pairs,)
        return full[valid_frames][..., valid_frames.flatten()], positive_scores, latent_lengths

    with torch.no_grad():
        plain, plain_positives, plain_lengths = scores(waveforms, None)
        with_padding, padded_positives, padded_lengths = scores(padded, torch.tensor([3200, 3200]))
    assert (
        torch.equal(plain_lengths, padded_lengths)
        and model.output_lengths(torch.tensor(padded.shape[1])) > padded_lengths.max()
    )
    assert plain.shape == with_padding.shape == (40, 3, 40) and len(plain_positives) == 2 * (17 + 18 + 19)
    torch.testing.assert_close(with_padding, plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded_positives, plain_positives, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "lengths, message",
    [
        (torch.tensor([3200, 3201]), r"lengths\[1\] = 3201 .* 3200 samples"),
        (torch.tensor([3200, -5]), r"lengths\[1\] = -5"),
        (torch.tensor([0, 3200]), r"lengths\[0\] = 0"),
        (torch.tensor([3200.0, 1600.0]), "integer tensor"),
        (torch.tensor([3200]), r"shape \(B,\) = \(2,\), got \(1,\)"),
        ([3200, 1600], "integer tensor"),
    ],
)
def test_bad_lengths_are_rejected_naming_the_value(lengths, message):
    model = tiny_model()
    with pytest.raises(ValueError, match=message):
        model.extract_features(torch.randn(2, 3200), lengths)
    with pytest.raises(ValueError, match=message):
        model(torch.randn(2, 3200), lengths, generator=torch.Generator().manual_seed(0))


def test_unknown_registry_names_are_clear():
    with pytest.raises(
        ValueError, match=r"model.context.name.*'transformer'.*\['gru', 'lstm', 'masked_conv', 'row_gru'\]"
    ):
        tiny_model(**{"model.context.name": "transformer"})
    with pytest.raises(
        ValueError, match=r"model.encoder.norm.*'group'.*\[none, batch, channel, channel_unbiased, instance\]"
    ):
        tiny_model(**{"model.encoder.norm": "group"})


def test_fresh_model_loss_is_log_n_plus_one():
    model = tiny_model(**{"model.loss.num_negatives": 32}).train()
    out = model(torch.randn(4, 6400), generator=torch.Generator().manual_seed(0))
    assert abs(out["loss"].item() - math.log(33)) < 0.05
    assert out["accuracy_per_step"].shape == out["mutual_information"].shape == (3,)


@pytest.mark.parametrize("context", ["gru", "lstm"])
def test_streaming_context_equals_one_pass(context):
    """The hidden state is explicit: feeding chunks and carrying it equals one pass."""
    model = tiny_model(**{"model.context.name": context})
    latents = torch.randn(2, 30, 24)
    with torch.no_grad():
        whole, _ = model.context(latents)
        first, hidden = model.context(latents[:, :11])
        second, _ = model.context(latents[:, 11:], hidden)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)
