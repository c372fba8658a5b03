"""Every shipped recipe is causal: context features at frame t do not depend on samples after t
(speech), at patch row r on patch rows below r (images), or at sentence t on later sentences (text).

CPC predicts the future from c_t (paper, section 2.1), and streaming extraction can only equal
one pass over the whole input if no frame looks past its own receptive field. The test trains
each recipe a few steps (so normalisation layers and biases are no longer at their initial
values), then changes the second half of a 2 s input and checks the frames before the change.
"""

from pathlib import Path

import pytest
import torch

import cpc
from cpc.config import load_config
from cpc.resources import list_recipes
from cpc.train import train

REPO_ROOT = Path(__file__).resolve().parents[1]

SAMPLES = 32000  # 2 s
CHANGE = 16000  # samples from here on are replaced


def _modality(recipe: str) -> str:
    return load_config(recipe).data.name


SPEECH = [recipe for recipe in list_recipes() if _modality(recipe) == "speech"]
IMAGE = [recipe for recipe in list_recipes() if _modality(recipe) == "fashion_mnist"]
TEXT = [recipe for recipe in list_recipes() if _modality(recipe) == "text"]


def test_every_recipe_file_is_tested():
    shipped = {
        str(p.relative_to(REPO_ROOT / "recipes").with_suffix("")) for p in (REPO_ROOT / "recipes").rglob("*.yaml")
    }
    assert shipped == set(list_recipes()) == set(SPEECH) | set(IMAGE) | set(TEXT) and SPEECH and IMAGE and TEXT


@pytest.mark.slow
@pytest.mark.parametrize("recipe", SPEECH)
def test_context_before_a_change_does_not_move(recipe, corpus_dir, tmp_path):
    overrides = {
        "data.root": corpus_dir,
        "data.window": 4096,
        "data.num_workers": 0,
        "data.valid_fraction": 0,
        "train.batch_size": 2,
        "train.max_steps": 3,
        "train.log_every": 1,
        "train.checkpoint_every": 3,
        "train.progress": False,
        "train.threads": 1,
    }
    train(load_config(recipe, [f"{key}={value}" for key, value in overrides.items()]), tmp_path / "run")
    model = cpc.load(tmp_path / "run" / "checkpoints" / "last.pt")
    encoder = model.encoder
    # Frame t reads samples [t*R - P, t*R - P + F): the last frame untouched by the change is
    # the one whose receptive field ends at or before CHANGE.
    last_unchanged = (CHANGE + encoder.left_padding - encoder.receptive_field) // encoder.downsample_rate
    generator = torch.Generator().manual_seed(0)
    waveform = 0.05 * torch.randn(1, SAMPLES, generator=generator)
    changed = waveform.clone()
    changed[:, CHANGE:] = 0.3 * torch.randn(1, SAMPLES - CHANGE, generator=generator)  # louder, too
    with torch.inference_mode():
        for layer in ("encoder", "context"):
            before, _ = model.extract_features(waveform, layer=layer)
            after, _ = model.extract_features(changed, layer=layer)
            torch.testing.assert_close(
                after[:, : last_unchanged + 1], before[:, : last_unchanged + 1], rtol=0, atol=0, msg=f"{recipe} {layer}"
            )
            assert not torch.allclose(after[:, last_unchanged + 1 :], before[:, last_unchanged + 1 :]), (
                f"{recipe} {layer}: the change reached no frame"
            )


@pytest.mark.slow
@pytest.mark.parametrize("recipe", IMAGE)
def test_context_rows_do_not_see_rows_below(recipe, tmp_path):
    from cpc.image.data import DEFAULT_ROOT

    if not (Path(DEFAULT_ROOT) / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    overrides = {
        "data.train_images": 256,
        "data.valid_images": 32,
        "train.batch_size": 8,
        "train.max_steps": 3,
        "train.log_every": 1,
        "train.checkpoint_every": 3,
        "train.valid_batches": 1,
        "train.progress": False,
        "train.threads": 1,
    }
    train(load_config(recipe, [f"{key}={value}" for key, value in overrides.items()]), tmp_path / "run")
    model = cpc.load(tmp_path / "run" / "checkpoints" / "last.pt")
    generator = torch.Generator().manual_seed(0)
    patches = torch.rand(2, 7, 7, 8, 8, generator=generator)
    with torch.inference_mode():
        for layer in ("encoder", "context"):
            before, _ = model.extract_features(patches, layer=layer)  # (B, rows, cols, D)
            for row in range(7):
                below = patches.clone()
                below[:, row + 1 :] = torch.rand(2, 6 - row, 7, 8, 8, generator=generator)
                after, _ = model.extract_features(below, layer=layer)
                torch.testing.assert_close(
                    after[:, : row + 1], before[:, : row + 1], rtol=0, atol=0, msg=f"{recipe} {layer} row {row}"
                )
                here = patches.clone()
                here[:, row] = torch.rand(2, 7, 8, 8, generator=generator)
                after, _ = model.extract_features(here, layer=layer)
                assert not torch.allclose(after[:, row], before[:, row]), (
                    f"{recipe} {layer}: changing row {row} did not reach it"
                )


@pytest.mark.slow
@pytest.mark.parametrize("recipe", TEXT)
def test_context_at_a_sentence_does_not_see_later_sentences(recipe, text_data_dir, tmp_path):
    overrides = {
        "data.root": text_data_dir,
        "data.window": 5,
        "data.valid_fraction": 0.1,
        "train.batch_size": 4,
        "train.max_steps": 3,
        "train.log_every": 1,
        "train.checkpoint_every": 3,
        "train.valid_batches": 1,
        "train.progress": False,
        "train.threads": 1,
    }
    train(load_config(recipe, [f"{key}={value}" for key, value in overrides.items()]), tmp_path / "run")
    model = cpc.load(tmp_path / "run" / "checkpoints" / "last.pt")
    tokenizer = model.encoder.tokenizer
    generator = torch.Generator().manual_seed(0)

    def sentences(count: int) -> torch.Tensor:  # (count, L, G) n-gram ids, every word present
        return torch.randint(1, tokenizer.buckets, (count, 7, tokenizer.max_ngrams), generator=generator)

    ids = torch.stack([sentences(6), sentences(6)])  # (B, T, L, G)
    with torch.inference_mode():
        for layer in ("encoder", "context"):
            before, _ = model.extract_features(ids, layer=layer)  # (B, T, D)
            for t in range(6):
                later = ids.clone()
                later[:, t + 1 :] = torch.stack([sentences(5 - t), sentences(5 - t)])
                after, _ = model.extract_features(later, layer=layer)
                torch.testing.assert_close(
                    after[:, : t + 1], before[:, : t + 1], rtol=0, atol=0, msg=f"{recipe} {layer} sentence {t}"
                )
                here = ids.clone()
                here[:, t] = torch.stack([sentences(1)[0], sentences(1)[0]])
                after, _ = model.extract_features(here, layer=layer)
                assert not torch.allclose(after[:, t], before[:, t]), (
                    f"{recipe} {layer}: changing sentence {t} did not reach it"
                )
