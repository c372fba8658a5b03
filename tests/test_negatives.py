"""Negative sampling never returns the positive or a padded frame, and respects its scope."""

import pytest
import torch

from cpc.negatives import NEGATIVE_SAMPLERS, positive_indices, sample_negatives


@pytest.mark.parametrize("scope", sorted(NEGATIVE_SAMPLERS))
def test_never_positive_never_padding(scope):
    num_frames, steps, num_negatives = 12, 4, 64
    lengths = torch.tensor([12, 7, 3, 10])
    negatives = sample_negatives(
        lengths, num_frames, steps, num_negatives, scope=scope, generator=torch.Generator().manual_seed(1)
    )
    assert negatives.shape == (4, num_frames, steps, num_negatives)
    positives, valid = positive_indices(lengths, num_frames, steps)
    sequence, frame = negatives // num_frames, negatives % num_frames
    checked = valid[..., None].expand_as(negatives)
    assert (negatives != positives[..., None])[checked].all(), "a positive was drawn"
    assert (frame < lengths[sequence])[checked].all(), "a padded frame was drawn"
    owner = torch.arange(4)[:, None, None, None].expand_as(negatives)
    if scope == "sequence":
        assert (sequence == owner)[checked].all()
    if scope == "other_sequences":
        assert (sequence != owner)[checked].all()
    if scope == "batch":
        assert (sequence != owner)[checked].any() and (sequence == owner)[checked].any()


def test_uniform_over_candidates():
    """With one sequence of 6 frames and t=0, k=1 (positive frame 1), frames 0, 2..5 are equally likely."""
    negatives = sample_negatives(
        torch.tensor([6]), 6, 1, 20000, scope="batch", generator=torch.Generator().manual_seed(0)
    )
    counts = torch.bincount(negatives[0, 0, 0], minlength=6).float()
    assert counts[1] == 0
    shares = counts[[0, 2, 3, 4, 5]] / counts.sum()
    torch.testing.assert_close(shares, torch.full((5,), 0.2), atol=0.015, rtol=0)


def test_generator_makes_it_reproducible():
    lengths = torch.tensor([10, 8])
    draw = lambda seed: sample_negatives(lengths, 10, 3, 5, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))


def test_other_sequences_needs_two_sequences():
    with pytest.raises(ValueError, match="two sequences"):
        sample_negatives(torch.tensor([10]), 10, 2, 4, scope="other_sequences", generator=torch.Generator())


def test_unknown_scope_names_the_key():
    with pytest.raises(ValueError, match="negative_scope"):
        sample_negatives(torch.tensor([10]), 10, 2, 4, scope="speaker", generator=torch.Generator())
