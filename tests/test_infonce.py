"""InfoNCE: the vectorised loss against a loop-based reference, and its known values."""

import math

import pytest
import torch

from cpc.config import InfoNCEConfig
from cpc.infonce import info_nce, score_by_copy, score_candidates
from cpc.negatives import positive_indices, sample_negatives
from cpc.objectives import build_infonce_criterion


def infonce_criterion(num_negatives, negative_scope="batch", **options):
    """The criterion that trains, as built for ``model.loss.name=infonce``."""
    criterion = build_infonce_criterion(InfoNCEConfig(num_negatives=num_negatives, negative_scope=negative_scope))
    for name, value in options.items():
        setattr(criterion, name, value)
    return criterion


def reference_info_nce(predictions, latents, lengths, negatives):
    """Eq. 4 computed one (b, t, k) at a time with explicit dot products."""
    batch_size, num_frames, steps, channels = predictions.shape
    flat = latents.reshape(-1, channels)
    losses = [[] for _ in range(steps)]
    correct = [[] for _ in range(steps)]
    for b in range(batch_size):
        for t in range(num_frames):
            for k in range(steps):
                if t + k + 1 >= lengths[b]:
                    continue
                prediction = predictions[b, t, k]
                positive = torch.dot(latents[b, t + k + 1], prediction)
                scores = [positive] + [torch.dot(flat[j], prediction) for j in negatives[b, t, k]]
                scores = torch.stack(scores)
                losses[k].append(-torch.log_softmax(scores, 0)[0])
                correct[k].append(float(scores[0] > scores[1:].max()))
    loss_per_step = torch.stack([torch.stack(per_step).mean() for per_step in losses])
    accuracy = torch.tensor([sum(c) / len(c) for c in correct])
    return loss_per_step, accuracy


def test_vectorised_equals_loop_reference():
    generator = torch.Generator().manual_seed(0)
    batch_size, num_frames, steps, channels, num_negatives = 3, 9, 3, 5, 4
    predictions = torch.randn(batch_size, num_frames, steps, channels, generator=generator)
    latents = torch.randn(batch_size, num_frames, channels, generator=generator)
    lengths = torch.tensor([9, 6, 4])
    negatives = sample_negatives(lengths, num_frames, steps, num_negatives, generator=generator)
    positives, valid = positive_indices(lengths, num_frames, steps)
    candidates = torch.cat([positives[..., None], negatives], -1)
    out = info_nce(score_candidates(predictions, latents, candidates), valid)
    loss_per_step, accuracy = reference_info_nce(predictions, latents, lengths, negatives)
    torch.testing.assert_close(out["loss_per_step"], loss_per_step)
    torch.testing.assert_close(out["accuracy_per_step"], accuracy)
    torch.testing.assert_close(out["loss"], loss_per_step.mean())
    torch.testing.assert_close(out["mutual_information"], math.log(num_negatives + 1) - loss_per_step)
    # The copying variant (used by the benchmark) scores the same candidates identically.
    torch.testing.assert_close(
        score_by_copy(predictions, latents, candidates), score_candidates(predictions, latents, candidates)
    )


@pytest.mark.parametrize("scope", ["batch", "sequence", "batch_shared"])
def test_criterion_copying_the_negatives_gives_the_same_metrics(scope):
    """``copy_negatives`` (the benchmark's CPC_audio-style scoring) changes memory, not the metrics or the gradients."""
    generator = torch.Generator().manual_seed(0)
    predictions = torch.randn(3, 9, 4, 6, generator=generator, requires_grad=True)
    latents, lengths = torch.randn(3, 9, 6, generator=generator), torch.tensor([9, 8, 6])
    runs = []
    for copy_negatives in (False, True):
        predictions.grad = None
        out = infonce_criterion(8, scope, copy_negatives=copy_negatives)(
            predictions, latents, lengths, torch.Generator().manual_seed(3)
        )
        out["loss"].backward()
        runs.append((out, predictions.grad.clone()))
    (fast, fast_grad), (copied, copied_grad) = runs
    for key in ("loss", "loss_per_step", "accuracy_per_step", "mutual_information", "num_pairs"):
        torch.testing.assert_close(copied[key], fast[key], msg=key)
    torch.testing.assert_close(copied_grad, fast_grad)


def test_loss_is_log_n_plus_one_for_uninformative_scores():
    num_negatives = 16
    criterion = infonce_criterion(num_negatives)
    predictions = torch.zeros(2, 20, 4, 8)  # every candidate scores 0
    latents = torch.randn(2, 20, 8)
    out = criterion(predictions, latents, torch.tensor([20, 20]), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out["loss"], torch.tensor(math.log(num_negatives + 1)))
    assert out["accuracy_per_step"].eq(0).all(), "ties must not count as correct"
    torch.testing.assert_close(out["mutual_information"], torch.zeros(4), atol=1e-6, rtol=0)


def test_perfect_predictor_has_accuracy_one():
    """Predicting exactly z_{t+k} with orthogonal latents makes the positive the unique best score."""
    num_frames, steps = 16, 3
    latents = torch.eye(num_frames)[None].repeat(2, 1, 1) * 10  # (B, T, C=T) one-hot frames
    latents[1] = latents[1].roll(5, dims=1)
    predictions = torch.zeros(2, num_frames, steps, num_frames)
    for k in range(steps):
        predictions[:, : num_frames - k - 1, k] = latents[:, k + 1 :]
    # Sequence 0 and 1 share no latent direction only if rolled one-hots differ; restrict negatives to the own sequence.
    out = infonce_criterion(8, "sequence")(
        predictions, latents, torch.tensor([num_frames, num_frames]), torch.Generator().manual_seed(0)
    )
    assert out["accuracy_per_step"].eq(1).all()
    assert out["loss"] < 1e-3
    torch.testing.assert_close(out["mutual_information"], torch.full((steps,), math.log(9)), atol=1e-3, rtol=0)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, T, K, 1\+N\)"):
        info_nce(torch.zeros(2, 3, 4), torch.ones(2, 3, dtype=torch.bool))


def test_steps_without_pairs_do_not_enter_the_loss():
    """A step k with no valid pair has no L_k: the loss is the mean over the other steps."""
    scores = torch.randn(2, 5, 3, 9, requires_grad=True)
    valid = torch.ones(2, 5, 3, dtype=torch.bool)
    valid[..., 2] = False  # no pair for k = 3
    out = info_nce(scores, valid)
    assert out["num_pairs"].tolist() == [10, 10, 0]
    torch.testing.assert_close(out["loss"], out["loss_per_step"][:2].mean())
    out["loss"].backward()
    assert torch.isfinite(scores.grad).all() and scores.grad[..., 2, :].abs().sum() == 0
    nothing = info_nce(scores.detach(), torch.zeros(2, 5, 3, dtype=torch.bool))
    assert nothing["loss"].item() == 0.0 and nothing["num_pairs"].sum() == 0


def test_grid_infonce_equals_loop_reference():
    """Image patch grids: offset k predicts k rows down, same column; negatives are any other
    patch of the batch. The module's result equals eq. 4 computed patch by patch."""
    generator = torch.Generator().manual_seed(1)
    batch_size, rows, cols, channels, num_negatives, offsets = 2, 5, 3, 4, 6, (2, 3)
    predictions = torch.randn(batch_size, rows, cols, len(offsets), channels, generator=generator)
    latents = torch.randn(batch_size, rows, cols, channels, generator=generator)
    lengths = torch.tensor([rows, rows])
    out = infonce_criterion(num_negatives)(
        predictions, latents, lengths, torch.Generator().manual_seed(7), offsets=offsets
    )
    # The same draws, made directly: flat positions b * rows * cols + r * cols + c.
    negatives = sample_negatives(
        lengths * cols, rows * cols, offsets, num_negatives, stride=cols, generator=torch.Generator().manual_seed(7)
    )
    losses, correct = [[] for _ in offsets], [[] for _ in offsets]
    for b in range(batch_size):
        for r in range(rows):
            for c in range(cols):
                for index, k in enumerate(offsets):
                    if r + k >= rows:
                        continue
                    prediction = predictions[b, r, c, index]
                    drawn = negatives[b, r * cols + c, index]
                    where = [(int(j) // (rows * cols), int(j) % (rows * cols) // cols, int(j) % cols) for j in drawn]
                    assert (b, r + k, c) not in where  # never the positive
                    scores = torch.stack(
                        [latents[b, r + k, c] @ prediction] + [latents[bb, rr, cc] @ prediction for bb, rr, cc in where]
                    )
                    losses[index].append(-torch.log_softmax(scores, 0)[0])
                    correct[index].append(float(scores[0] > scores[1:].max()))
    torch.testing.assert_close(out["loss_per_step"], torch.stack([torch.stack(per_step).mean() for per_step in losses]))
    torch.testing.assert_close(out["accuracy_per_step"], torch.tensor([sum(c) / len(c) for c in correct]))
    assert out["num_pairs"].tolist() == [batch_size * (rows - k) * cols for k in offsets]


def test_grid_negatives_of_sequence_scope_stay_in_the_image():
    rows, cols = 4, 4
    lengths = torch.tensor([rows, rows, rows]) * cols
    negatives = sample_negatives(
        lengths, rows * cols, (2,), 50, scope="sequence", stride=cols, generator=torch.Generator().manual_seed(0)
    )
    positives, valid = positive_indices(lengths, rows * cols, (2,), stride=cols)
    image = torch.arange(3)[:, None, None, None]
    assert ((negatives // (rows * cols)) == image).all()
    assert (negatives != positives[..., None])[valid].all()
    assert valid.sum() == 3 * (rows - 2) * cols
