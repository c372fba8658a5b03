"""The sentence encoder (padding at both levels equals per-sample encoding), the text model built
from the recipe, and the probe's cross-validation against known cases."""

import numpy as np
import pytest
import torch

from cpc.config import load_config
from cpc.model import build_model
from cpc.text.encoder import SentenceEncoder
from cpc.text.probe import cross_validate


def _ids(generator, *shape, buckets=50, max_ngrams=4):
    """Random n-gram ids (*shape, G): every word has its whole-word id and 1..G n-grams, the rest 0."""
    ids = torch.randint(1, buckets, (*shape, max_ngrams), generator=generator)
    kept = torch.randint(1, max_ngrams + 1, shape, generator=generator)
    return ids * (torch.arange(max_ngrams) < kept[..., None])


def _encoder(**overrides):
    torch.manual_seed(0)
    return SentenceEncoder(
        **{"buckets": 50, "max_ngrams": 4, "embedding_size": 8, "latent_size": 6, "kernel_size": 3, **overrides}
    )


def test_padded_words_and_sentences_equal_per_sample_encoding():
    generator = torch.Generator().manual_seed(0)
    encoder = _encoder()
    words_per_sentence, sentences = [[3, 1, 5], [2, 4]], [3, 2]
    batch = torch.zeros(2, 3, 6, 4, dtype=torch.long)  # (B, T, L, G): room for a sixth word, a third sentence
    alone = []
    for b in range(2):
        sequence = torch.zeros(sentences[b], max(words_per_sentence[b]), 4, dtype=torch.long)
        for t in range(sentences[b]):
            sequence[t, : words_per_sentence[b][t]] = _ids(generator, words_per_sentence[b][t])
        batch[b, : sentences[b], : sequence.shape[1]] = sequence
        latents, _ = encoder(sequence[None])  # (1, T_b, C)
        alone.append(latents[0])
    latents, lengths = encoder(batch, torch.tensor(sentences))
    assert lengths.tolist() == sentences and latents.shape == (2, 3, 6)
    for b in range(2):
        torch.testing.assert_close(latents[b, : sentences[b]], alone[b], rtol=1e-6, atol=1e-6)
    assert not latents[1, 2].any()  # a padding sentence has no words: latent 0
    # Reference for one sentence: mean n-gram embedding per word, conv, ReLU, mean over its words.
    sentence = batch[0, 0, :3]  # (L, G)
    present = (sentence != 0).float()  # (L, G)
    words = (encoder.embedding.weight[sentence] * present[..., None]).sum(1) / present.sum(1, keepdim=True)  # (L, E)
    hidden = torch.relu(encoder.conv(words.T[None]))[0]  # (C, L)
    torch.testing.assert_close(latents[0, 0], hidden.mean(1), rtol=1e-5, atol=1e-6)


def test_bad_inputs_are_refused_with_their_shape():
    encoder = _encoder()
    with pytest.raises(ValueError, match=r"\(B, T, L, 4\)"):
        encoder(torch.zeros(2, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="lengths"):
        encoder(torch.zeros(2, 3, 5, 4, dtype=torch.long), torch.tensor([4, 1]))
    with pytest.raises(ValueError, match="odd"):
        _encoder(kernel_size=2)


def test_the_recipe_builds_a_model_that_learns_on_sentence_windows():
    config = load_config(
        "text/books",
        [
            "model.encoder.buckets=1000",
            "model.encoder.latent_size=32",
            "model.context.hidden_size=32",
            "model.loss.num_negatives=8",
        ],
    )
    torch.manual_seed(0)
    model = build_model(config)
    generator = torch.Generator().manual_seed(0)
    ids = _ids(generator, 4, 6, 7, buckets=1000, max_ngrams=24)  # (B, T, L, G)
    lengths = torch.tensor([6, 6, 4, 3])
    out = model(ids, lengths, generator=torch.Generator().manual_seed(0))
    field = (
        (lambda name: out[name]) if isinstance(out, dict) else (lambda name: getattr(out, name))
    )  # the criterion's output, either form
    assert field("loss_per_step").shape == (3,) and field("num_pairs").tolist() == [
        15,
        11,
        7,
    ]  # pairs (t, t + k) inside each window
    assert abs(field("loss").item() - np.log(9)) < 0.5  # about log(N + 1) at initialisation
    field("loss").backward()
    assert (
        model.encoder.embedding.weight.grad.abs().sum() > 0 and not model.encoder.embedding.weight.grad[0].any()
    )  # padding row fixed
    features, _ = model.extract_features(ids, lengths)
    assert features.shape == (4, 6, 32)


@pytest.mark.slow
def test_cross_validation_on_known_cases():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 60)
    separable = rng.normal(size=(120, 5)) + 4.0 * labels[:, None]
    result = cross_validate(separable, labels, folds=4)
    assert result["accuracy"] == 100.0 and result["std"] == 0.0 and len(result["chosen_C"]) == 4
    noise = cross_validate(rng.normal(size=(120, 5)), labels, folds=4)
    assert 25.0 < noise["accuracy"] < 75.0
    texts = ["good fun film" if label else "dull bad film" for label in labels]
    assert cross_validate(texts, labels, sparse="bow", folds=4)["accuracy"] == 100.0
