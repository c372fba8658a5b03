"""The CPU speed paths compute what the plain paths compute: scoring each sequence against its
own latents, the first layer as a matmul of frames, the channels-last encoder (docs/speed.md).

Shape legend: B batch, S samples, T frames, K offsets ahead, C channels, N negatives.
"""

import pytest
import torch
from torch import nn

from cpc.config import load_config
from cpc.infonce import info_nce, sample_candidates, score_candidates, score_within_sequences
from cpc.model import build_model
from cpc.speech.encoder import conv_frames, conv_waveforms


def sequence_sample(lengths, *, grid=(12,), steps=3, channels=5, num_negatives=7, seed=0):
    generator = torch.Generator().manual_seed(seed)
    batch_size = len(lengths)
    predictions = torch.randn(batch_size, *grid, steps, channels, generator=generator, dtype=torch.float64)
    latents = torch.randn(batch_size, *grid, channels, generator=generator, dtype=torch.float64)
    predictions.requires_grad_(True)
    latents.requires_grad_(True)
    sample = sample_candidates(
        predictions,
        latents,
        torch.tensor(lengths),
        torch.Generator().manual_seed(seed + 1),
        offsets=None,
        num_negatives=num_negatives,
        negative_scope="sequence",
    )
    return sample, predictions, latents


@pytest.mark.parametrize("lengths, grid", [([12, 12, 12], (12,)), ([12, 7, 2], (12,)), ([3, 2], (3, 4))])
def test_scoring_within_sequences_equals_scoring_against_the_whole_batch(lengths, grid):
    sample, predictions, latents = sequence_sample(lengths, grid=grid)
    assert sample.within_sequences
    weights = torch.randn(sample.candidates.shape, dtype=torch.float64)
    valid = sample.valid[..., None]  # pairs past a sequence's end are masked by the loss

    def scored(function):
        predictions.grad = latents.grad = None
        scores = function(sample.predictions, sample.latents, sample.candidates)
        (scores * weights * valid).sum().backward()
        return scores.detach() * valid, predictions.grad.clone(), latents.grad.clone()

    fast, reference = scored(score_within_sequences), scored(score_candidates)
    for got, expected in zip(fast, reference):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(sample.scores(), score_within_sequences(sample.predictions, sample.latents, sample.candidates))


def test_scoring_within_sequences_reads_no_other_sequence():
    sample, _, _ = sequence_sample([12, 12])
    scores = score_within_sequences(sample.predictions, sample.latents, sample.candidates)
    other = sample.latents.detach().clone()
    other[1] += 100.0  # change only the second sequence's latents
    moved = score_within_sequences(sample.predictions, other, sample.candidates)
    assert torch.equal(moved[0], scores[0]) and not torch.equal(moved[1], scores[1])


@pytest.mark.parametrize("kernel, stride, padding, bias", [(10, 5, 3, False), (10, 5, 3, True), (4, 2, 0, True)])
def test_the_first_layer_as_a_matmul_equals_conv1d(kernel, stride, padding, bias):
    conv = nn.Conv1d(1, 6, kernel, stride, padding, bias=bias).double()
    waveforms = torch.randn(3, 401, dtype=torch.float64)
    expected = conv(waveforms[:, None]).transpose(1, 2)  # (B, T, C)
    got = conv_waveforms(waveforms, conv.weight, conv.bias, stride, padding)
    assert got.is_contiguous()
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_a_channels_last_convolution_equals_conv1d():
    conv = nn.Conv1d(4, 6, 8, 4, 2).double()
    frames = torch.randn(3, 101, 4, dtype=torch.float64)  # (B, T, C)
    expected = conv(frames.transpose(1, 2)).transpose(1, 2)
    got = conv_frames(frames, conv.weight, conv.bias, 4, 2)
    assert got.is_contiguous()
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("recipe", ["speech/tiny", "speech/paper"])
def test_a_fixed_batch_gives_the_same_loss_with_and_without_each_speed_option(recipe):
    """Each option on its own and all together, against the plain path (channels-first layout,
    scoring against every latent of the batch), in float32: 1e-5 relative."""
    torch.manual_seed(0)
    model = build_model(load_config(recipe, ["model.predictor.init=default", "model.loss.negative_scope=sequence"]))
    waveforms, lengths = 0.1 * torch.randn(3, 8000), torch.tensor([8000, 8000, 5000])

    def loss(channels_last: bool, within_sequences: bool) -> torch.Tensor:
        model.encoder.channels_last = channels_last
        latents, latent_lengths = model.encoder(waveforms, lengths)
        predictions = model.predictors(model.context(latents)[0])
        sample = sample_candidates(
            predictions,
            latents,
            latent_lengths,
            torch.Generator().manual_seed(3),
            offsets=None,
            num_negatives=model.criterion.num_negatives,
            negative_scope="sequence",
        )
        sample = sample._replace(within_sequences=within_sequences)
        return info_nce(sample.scores(), sample.valid)["loss"]

    with torch.no_grad():
        plain = loss(False, False)
        for options in [(True, False), (False, True), (True, True)]:
            torch.testing.assert_close(loss(*options), plain, rtol=1e-5, atol=0)


@pytest.mark.parametrize("load, policy, expected", [(0, None, "unset"), (1, None, "PASSIVE"), (1, "ACTIVE", "ACTIVE")])
def test_importing_cpc_on_a_busy_machine_makes_openmp_threads_wait_passively(load, policy, expected):
    """The machine's load is the one thing replaced (/proc/stat as read by cpc): it cannot be set for a test."""
    import os
    import subprocess
    import sys

    read = (
        "import builtins, io, os; real = builtins.open; "
        f"builtins.open = lambda path, *a, **k: io.StringIO('procs_running {load + 1}\\n') if path == '/proc/stat' else real(path, *a, **k); "
        "import cpc; print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"
    )
    environment = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if policy is not None:
        environment["OMP_WAIT_POLICY"] = policy
    result = subprocess.run([sys.executable, "-c", read], env=environment, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == expected
