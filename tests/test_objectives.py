"""The contrastive objectives (cpc.objectives): each against a loop reference over explicit
vectors, hand-computed values, triplet mining on built examples, finite gradients at
initialisation, the widely copied minimal InfoNCE snippet, and every objective training
every shipped recipe."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cpc.config import ConfigError, load_config
from cpc.infonce import info_nce, score_candidates
from cpc.model import build_model
from cpc.negatives import sample_negatives
from cpc.objectives import PER_STEP_METRICS, binary_logistic, infonce, margin_contrastive, nt_xent, triplet
from cpc.registry import LOSSES
from cpc.resources import list_recipes

OBJECTIVES = ("infonce", "nt_xent", "margin", "triplet", "binary")
OPTIONS = {
    "infonce": {},
    "nt_xent": {"temperature": 0.5},
    "margin": {"margin": 1.0, "positive_margin": 0.1},
    "binary": {},
    **{f"triplet_{mining}": {"margin": 0.2, "mining": mining} for mining in ("all", "hard", "semi_hard")},
}


def test_every_objective_is_registered():
    assert set(LOSSES) == set(OBJECTIVES) == set(PER_STEP_METRICS)


# ----------------------------------------------------------------------------- loop references


def unit(vector):
    return vector / vector.norm()


def reference_pair_loss(name: str, anchor, positive, negatives, options) -> tuple[float, bool]:
    """One (b, t, k) pair straight from the papers' formulas, on explicit vectors."""
    if name == "infonce":
        scores = torch.stack([positive @ anchor] + [z @ anchor for z in negatives])
        return -torch.log_softmax(scores, 0)[0].item(), bool(scores[0] > scores[1:].max())
    if name == "nt_xent":
        cosines = torch.stack([F.cosine_similarity(anchor, z, dim=0) for z in [positive, *negatives]])
        scores = cosines / options["temperature"]
        return -torch.log_softmax(scores, 0)[0].item(), bool(scores[0] > scores[1:].max())
    if name == "binary":
        scores = [positive @ anchor] + [z @ anchor for z in negatives]
        loss = -math.log(torch.sigmoid(scores[0]).item()) - sum(
            math.log(1 - torch.sigmoid(s).item()) for s in scores[1:]
        )
        return loss, bool(scores[0] > max(scores[1:]))
    a = unit(anchor)
    distances = [torch.dist(a, unit(z)).item() for z in [positive, *negatives]]
    if name == "margin":
        loss = max(0.0, distances[0] - options["positive_margin"]) ** 2
        loss += sum(max(0.0, options["margin"] - d) ** 2 for d in distances[1:]) / len(negatives)
        return loss, distances[0] < min(distances[1:])
    # triplet: squared distances, FaceNet's hinge, one negative chosen by the mining rule
    squared = [d * d for d in distances]
    positive_distance, margin = squared[0], options["margin"]
    hinges = [max(0.0, positive_distance - d + margin) for d in squared[1:]]
    if options["mining"] == "all":
        loss = sum(hinges) / len(hinges)
    elif options["mining"] == "hard":
        loss = hinges[min(range(len(hinges)), key=lambda j: squared[1 + j])]
    else:
        semi_hard = [j for j in range(len(hinges)) if positive_distance <= squared[1 + j] < positive_distance + margin]
        loss = hinges[min(semi_hard, key=lambda j: squared[1 + j])] if semi_hard else 0.0
    return loss, positive_distance < min(squared[1:])


def build_criterion(case: str, num_negatives: int):
    name = case.split("_")[0] if case.startswith("triplet") else case
    options = {key: value for key, value in OPTIONS[case].items()}
    config = load_config(
        None,
        [
            f"model.loss.name={name}",
            f"model.loss.num_negatives={num_negatives}",
            *(f"model.loss.{k}={v}" for k, v in options.items()),
        ],
    )
    return name, build_model(config).criterion


@pytest.mark.parametrize("case", sorted(OPTIONS))
def test_each_objective_equals_its_loop_reference(case):
    batch_size, num_frames, steps, channels, num_negatives = 2, 7, 3, 5, 4
    name, criterion = build_criterion(case, num_negatives)
    generator = torch.Generator().manual_seed(1)
    predictions = torch.randn(batch_size, num_frames, steps, channels, generator=generator)
    latents = torch.randn(batch_size, num_frames, channels, generator=generator)
    lengths = torch.tensor([7, 5])
    out = criterion(predictions, latents, lengths, torch.Generator().manual_seed(5))
    negatives = sample_negatives(
        lengths, num_frames, steps, num_negatives, generator=torch.Generator().manual_seed(5)
    )  # the same draws
    flat = latents.reshape(-1, channels)
    losses, correct = [[] for _ in range(steps)], [[] for _ in range(steps)]
    for b in range(batch_size):
        for t in range(num_frames):
            for k in range(steps):
                if t + k + 1 < lengths[b]:
                    loss, right = reference_pair_loss(
                        name, predictions[b, t, k], latents[b, t + k + 1], flat[negatives[b, t, k]], OPTIONS[case]
                    )
                    losses[k].append(loss)
                    correct[k].append(float(right))
    loss_per_step = torch.tensor([sum(per_step) / len(per_step) for per_step in losses])
    torch.testing.assert_close(out["loss_per_step"], loss_per_step, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out["accuracy_per_step"], torch.tensor([sum(c) / len(c) for c in correct]))
    torch.testing.assert_close(out["loss"], loss_per_step.mean(), atol=1e-5, rtol=1e-4)
    assert out["num_pairs"].tolist() == [len(per_step) for per_step in losses]
    if name in ("infonce", "nt_xent"):  # only these are bounds on the mutual information
        torch.testing.assert_close(
            out["mutual_information"], math.log(num_negatives + 1) - loss_per_step, atol=1e-5, rtol=1e-4
        )
    else:
        assert "mutual_information" not in out
    assert set(out) == {"loss", "loss_per_step", "num_pairs", *PER_STEP_METRICS[name]}


# ----------------------------------------------------------------------------- hand-computed values


def one_pair(values):
    """A single valid pair: values (M,) -> (1, 1, 1, M), valid (1, 1, 1)."""
    return torch.tensor(values, dtype=torch.float32)[None, None, None], torch.ones(1, 1, 1, dtype=torch.bool)


def test_hand_computed_values():
    scores, valid = one_pair([2.0, 0.0, 0.0])
    assert infonce(scores, valid)["loss"].item() == pytest.approx(math.log(math.exp(2) + 2) - 2)
    assert infonce(scores, valid)["mutual_information"].item() == pytest.approx(
        math.log(3) - (math.log(math.exp(2) + 2) - 2)
    )
    # binary: -log sigma(2) - 2 log sigma(-0) = log(1 + e^-2) + 2 log 2
    assert binary_logistic(scores, valid)["loss"].item() == pytest.approx(math.log(1 + math.exp(-2)) + 2 * math.log(2))
    cosine, _ = one_pair([1.0, 0.0, -1.0])
    assert nt_xent(cosine, valid, temperature=0.5)["loss"].item() == pytest.approx(
        math.log(math.exp(2) + 1 + math.exp(-2)) - 2
    )
    # margin: d = (0.5, 0.3, 1.5), m = 1: 0.5^2 + ((1 - 0.3)^2 + 0) / 2 = 0.25 + 0.245
    squared, _ = one_pair([0.25, 0.09, 2.25])
    assert margin_contrastive(squared, valid, margin=1.0)["loss"].item() == pytest.approx(0.495)
    assert margin_contrastive(squared, valid, margin=1.0, positive_margin=0.5)["loss"].item() == pytest.approx(
        0.245
    )  # inside m_pos: no pull
    assert (
        margin_contrastive(squared, valid, margin=1.0)["accuracy_per_step"].item() == 0.0
    )  # 0.3 is closer than the positive


def test_a_perfect_and_an_uninformative_scorer():
    perfect, valid = one_pair([50.0] + [-50.0] * 8)
    for objective in (infonce, binary_logistic):
        out = objective(perfect, valid)
        assert out["loss"].item() < 1e-6 and out["accuracy_per_step"].item() == 1.0
    assert infonce(perfect, valid)["mutual_information"].item() == pytest.approx(math.log(9), abs=1e-4)
    ties, _ = one_pair([0.0] * 9)
    assert infonce(ties, valid)["loss"].item() == pytest.approx(math.log(9))
    assert binary_logistic(ties, valid)["loss"].item() == pytest.approx(9 * math.log(2))
    assert all(objective(ties, valid)["accuracy_per_step"].item() == 0.0 for objective in (infonce, binary_logistic)), (
        "ties are not correct"
    )


# ----------------------------------------------------------------------------- triplet mining


def test_mining_picks_the_right_negative():
    # D_ap = 0.5, margin 0.2: 0.3 is hard (closer than the positive), 0.6 semi-hard (0.5 <= 0.6 < 0.7),
    # 0.65 semi-hard too but farther, 0.8 and 1.0 easy.
    squared, valid = one_pair([0.5, 0.8, 0.3, 1.0, 0.65, 0.6])
    hard = triplet(squared, valid, margin=0.2, mining="hard")
    assert hard["loss"].item() == pytest.approx(0.5 - 0.3 + 0.2)
    semi_hard = triplet(squared, valid, margin=0.2, mining="semi_hard")
    assert semi_hard["loss"].item() == pytest.approx(0.5 - 0.6 + 0.2)  # the closest semi-hard one, not 0.65
    every = triplet(squared, valid, margin=0.2, mining="all")
    assert every["loss"].item() == pytest.approx((0.4 + 0.1 + 0.05) / 5)
    assert hard["hard_share"].item() == pytest.approx(1 / 5)
    assert hard["semi_hard_share"].item() == pytest.approx(2 / 5)
    assert hard["easy_share"].item() == pytest.approx(2 / 5)
    # Gradients reach only the mined negative.
    squared.requires_grad_(True)
    triplet(squared, valid, margin=0.2, mining="semi_hard")["loss"].backward()
    assert squared.grad[0, 0, 0].tolist() == pytest.approx([1, 0, 0, 0, 0, -1])


def test_no_semi_hard_negative_gives_no_loss():
    squared, valid = one_pair([0.5, 0.2, 0.9, 1.2])  # one hard, two easy, none in [0.5, 0.7)
    out = triplet(squared, valid, margin=0.2, mining="semi_hard")
    assert out["loss"].item() == 0.0 and out["semi_hard_share"].item() == 0.0
    assert triplet(squared, valid, margin=0.2, mining="hard")["loss"].item() == pytest.approx(0.5)
    easy, _ = one_pair([0.1, 0.9, 1.2])  # every negative already far enough
    for mining in ("all", "hard", "semi_hard"):
        result = triplet(easy, valid, margin=0.2, mining=mining)
        assert (
            result["loss"].item() == 0.0
            and result["easy_share"].item() == 1.0
            and result["accuracy_per_step"].item() == 1.0
        )


# ----------------------------------------------------------------------------- the widely copied snippet


def minimal_info_nce_snippet(embeddings, queries, temperature):
    """The minimal InfoNCE found in many tutorials: a batch against itself, positives on the
    diagonal, moved to column 0, cross-entropy with label 0. As usually copied it calls
    ``embeddings.T()``, which raises (``T`` is a property, not a method); corrected here."""
    logits = queries @ embeddings.T / temperature  # (B, B), positives on the diagonal
    batch_size = len(logits)
    positives = logits.diagonal()[:, None]  # (B, 1)
    negatives = logits[~torch.eye(batch_size, dtype=torch.bool)].view(batch_size, batch_size - 1)  # (B, B-1)
    labels = torch.zeros(batch_size, dtype=torch.long)  # the positive is column 0
    return F.cross_entropy(torch.cat([positives, negatives], dim=1), labels)


def test_the_minimal_snippet_equals_our_infonce_with_in_batch_negatives():
    generator = torch.Generator().manual_seed(0)
    batch_size, channels, temperature = 6, 8, 0.1
    embeddings, queries = (
        torch.randn(batch_size, channels, generator=generator),
        torch.randn(batch_size, channels, generator=generator),
    )
    with pytest.raises(TypeError):
        queries @ embeddings.T()  # the snippet as copied
    expected = minimal_info_nce_snippet(embeddings, queries, temperature)
    # Ours: B sequences of one position; candidate j of query i is the positive i, then the B - 1 others.
    candidates = torch.tensor(
        [[i] + [j for j in range(batch_size) if j != i] for i in range(batch_size)]
    )  # (B, B) flat indices
    scores = score_candidates(
        (queries / temperature)[:, None, None, :], embeddings[:, None, :], candidates[:, None, None, :]
    )  # (B, 1, 1, B)
    ours = info_nce(scores, torch.ones(batch_size, 1, 1, dtype=torch.bool))
    torch.testing.assert_close(ours["loss"], expected)
    assert scores.shape[-1] - 1 == batch_size - 1  # N = B - 1 in-batch negatives


# ----------------------------------------------------------------------------- configs and gradients


def test_each_objective_has_its_own_typed_config():
    config = load_config(
        "speech/tiny", ["model.loss.name=triplet", "model.loss.mining=hard", "model.loss.num_negatives=16"]
    )
    assert (
        config.model.loss.mining == "hard"
        and config.model.loss.margin == 0.2
        and "temperature" not in config.model.loss
    )
    with pytest.raises(ConfigError, match="model.loss.temperature"):
        load_config("speech/tiny", ["model.loss.name=margin", "model.loss.temperature=0.1"])
    with pytest.raises(ConfigError, match="model.loss.mining"):
        load_config("speech/tiny", ["model.loss.name=triplet", "model.loss.mining=hardest"])
    with pytest.raises(
        ConfigError, match=r"model.loss.name.*'nce'.*\['binary', 'infonce', 'margin', 'nt_xent', 'triplet'\]"
    ):
        load_config("speech/tiny", ["model.loss.name=nce"])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        build_model(load_config("speech/tiny", ["model.loss.name=nt_xent", "model.loss.temperature=0"]))


@pytest.mark.parametrize("name", OBJECTIVES)
@pytest.mark.parametrize("init", ["default", "zeros"])
def test_gradients_are_finite_at_initialisation(name, init):
    """Zero-initialised predictors (the tiny recipe's) make every prediction the zero vector:
    the cosine and distance objectives must not divide by its norm into NaN."""
    config = load_config(
        "speech/tiny",
        [
            f"model.loss.name={name}",
            "model.loss.num_negatives=8",
            f"model.predictor.init={init}",
            "model.predictor.prediction_steps=4",
        ],
    )
    torch.manual_seed(0)
    model = build_model(config).train()
    out = model(0.05 * torch.randn(2, 4096), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    gradients = [p.grad for p in model.parameters() if p.grad is not None]
    assert gradients and all(torch.isfinite(g).all() for g in gradients)


# ----------------------------------------------------------------------------- every objective x every recipe


def _modality(recipe: str) -> str:
    return load_config(recipe).data.name


def small_overrides(recipe: str, corpus_dir, request) -> dict:
    """Each modality's data at test size (as tests/test_causality.py); the training loop's at two steps."""
    common = {
        "train.batch_size": 2,
        "train.max_steps": 2,
        "train.log_every": 1,
        "train.valid_every": 2,
        "train.valid_batches": 1,
        "train.checkpoint_every": 2,
        "train.progress": False,
        "train.threads": 1,
        "model.loss.num_negatives": 8,
    }
    modality = _modality(recipe)
    if modality == "speech":
        return {
            **common,
            "data.root": corpus_dir,
            "data.window": 4096,
            "data.num_workers": 0,
            "data.valid_fraction": 0.2,
        }
    if modality == "fashion_mnist":
        from cpc.image.data import DEFAULT_ROOT

        if not (Path(DEFAULT_ROOT) / "train-images-idx3-ubyte.gz").is_file():
            pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
        return {**common, "data.train_images": 64, "data.valid_images": 16}
    if modality == "text":  # a slice of `cpc data text` (the fixture skips when a source is missing), a narrow model
        return {
            **common,
            "data.root": request.getfixturevalue("text_data_dir"),
            "data.window": 5,
            "data.valid_fraction": 0.1,
            "train.batch_size": 4,
            "model.encoder.buckets": 4096,
            "model.encoder.embedding_size": 16,
            "model.encoder.latent_size": 32,
            "model.context.hidden_size": 32,
        }
    # A modality this test does not know yet: its recipe's own data at two steps of batch 2.
    config = load_config(recipe)
    return {**common, **({"data.num_workers": 0} if "num_workers" in config.data else {})}


@pytest.mark.parametrize("name", OBJECTIVES)
@pytest.mark.parametrize("recipe", list_recipes())
def test_every_objective_trains_every_recipe(recipe, name, corpus_dir, tmp_path, request):
    from cpc.train import train

    overrides = small_overrides(recipe, corpus_dir, request)
    if recipe == "speech/paper":  # the paper's width at test speed: only the channels shrink
        overrides["model.encoder.layers"] = (
            "["
            + ",".join(
                f"{{channels: 64, kernel_size: {k}, stride: {s}, padding: {p}}}"
                for k, s, p in [(10, 5, 3), (8, 4, 2), (4, 2, 1), (4, 2, 1), (4, 2, 1)]
            )
            + "]"
        )
    # Naming another loss starts model.loss from that objective's defaults; num_negatives is set again after it.
    settings = [f"model.loss.name={name}", *(f"{key}={value}" for key, value in overrides.items())]
    train(load_config(recipe, settings), tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if "split" not in r]
    assert [r["step"] for r in train_records] == [1, 2]
    assert all(math.isfinite(r["loss"]) for r in records)
    assert all(a is None or 0 <= a <= 1 for r in records for a in r["accuracy"])
    for record in records:  # a loss that is no MI bound logs none (not zeros)
        assert ("mutual_information" in record) == (name in ("infonce", "nt_xent")), record
