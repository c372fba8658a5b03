"""The config registry: each section's variant chosen by ``name``, typed by that variant's class."""

from dataclasses import dataclass

import pytest
import torch
from torch import nn

import cpc
from cpc.config import ConfigError, describe_keys, from_container, load_config, to_container
from cpc.registry import ENCODERS, SECTIONS, Variant


def test_unknown_variant_is_named_with_the_choices():
    with pytest.raises(
        ConfigError, match=r"override 'model.encoder.name=nope'.*'model.encoder.name'.*'nope' is not one of \['conv'"
    ):
        load_config("speech/tiny", ["model.encoder.name=nope"])
    with pytest.raises(ConfigError, match=r"'data.name'.*'images' is not one of"):
        load_config("speech/tiny", ["data.name=images"])


def test_keys_are_checked_against_the_chosen_variant():
    with pytest.raises(ConfigError, match=r"'model.encoder.hidden_size'.*not in 'ConvEncoderConfig'"):
        load_config("speech/tiny", ["model.encoder.hidden_size=3"])
    with pytest.raises(ConfigError, match=r"'data.bogus'.*not in 'SpeechDataConfig'"):
        load_config("speech/tiny", ["data.bogus=1"])
    with pytest.raises(ConfigError, match=r"'model.loss.num_negatives'.*could not be converted"):
        load_config("speech/tiny", ["model.loss.num_negatives=many"])


def test_a_config_saved_before_sections_had_names_loads_as_the_defaults():
    saved = to_container(load_config("speech/tiny"))
    for section in ("encoder", "context", "predictor", "loss"):
        saved["model"][section].pop("name")
    saved["data"].pop("name")
    saved["model"]["predictor"].pop("first_offset")
    config = from_container(saved)
    assert (config.model.encoder.name, config.model.loss.name, config.data.name) == ("conv", "infonce", "speech")
    assert cpc.build_model(config).predictors.offsets == tuple(range(1, config.model.predictor.prediction_steps + 1))


def test_every_variant_is_described_in_the_help():
    text = describe_keys()
    for section, registry in SECTIONS.items():
        for name in registry:
            assert any(line.strip().startswith(f"{section}.name=") and name in line for line in text.splitlines()), (
                section,
                name,
            )


@dataclass
class _LinearFramesConfig:
    name: str = "linear_frames"
    frame: int = 40
    latent_size: int = 8


class _LinearFrames(nn.Module):
    """A toy encoder: non-overlapping frames of raw audio, projected. (B, S) -> (B, S // frame, C)."""

    def __init__(self, config):
        super().__init__()
        self.frame, self.output_size = config.frame, config.latent_size
        self.project = nn.Linear(config.frame, config.latent_size)

    def output_lengths(self, lengths):
        return lengths // self.frame

    def forward(self, waveforms, lengths=None):
        frames = waveforms[:, : waveforms.shape[1] // self.frame * self.frame].unflatten(
            1, (-1, self.frame)
        )  # (B, T, frame)
        lengths = torch.full((len(waveforms),), frames.shape[1]) if lengths is None else self.output_lengths(lengths)
        return self.project(frames), lengths


def test_adding_an_encoder_is_one_registry_entry(monkeypatch, tmp_path):
    monkeypatch.setitem(ENCODERS, "linear_frames", Variant(_LinearFramesConfig, _LinearFrames))
    config = load_config(
        None, ["model.encoder.name=linear_frames", "model.encoder.frame=80", "model.context.hidden_size=8"]
    )
    assert config.model.encoder.frame == 80 and "layers" not in config.model.encoder
    with pytest.raises(ConfigError, match="'model.encoder.layers'.*not in '_LinearFramesConfig'"):
        load_config(None, ["model.encoder.name=linear_frames", "model.encoder.layers=[]"])
    model = cpc.build_model(config)
    out = model(torch.randn(2, 8000), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"]) and out["num_pairs"][0] == 2 * (100 - 1)


def test_naming_another_variant_starts_the_section_from_its_defaults():
    # The image recipe's context is masked_conv with layers/kernel_size; row_gru has neither.
    config = load_config("image/fashion_mnist", ["model.context.name=row_gru", "model.context.hidden_size=64"])
    assert dict(config.model.context) == {"name": "row_gru", "hidden_size": 64}
    assert config.model.encoder.name == "patch_resnet"  # other sections keep the recipe's values
    kept = load_config("image/fashion_mnist", ["model.context.name=masked_conv"])  # the same variant: nothing dropped
    assert kept.model.context.layers == load_config("image/fashion_mnist").model.context.layers
    lstm = load_config("speech/tiny", ["model.context.name=lstm"])  # gru and lstm share a config class: kept
    assert lstm.model.context.hidden_size == load_config("speech/tiny").model.context.hidden_size == 128


def test_a_run_of_the_previous_version_loads_and_resumes(corpus_dir, tmp_path):
    """Checkpoints written before the registry had no names for the loss and data sections and
    no predictor.first_offset: they load, and --resume continues them."""
    from conftest import small_config

    from cpc.checkpoint import load_checkpoint, save_checkpoint
    from cpc.train import train

    train(small_config(corpus_dir, **{"train.max_steps": 3}), tmp_path / "run")
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    for section in ("loss",):
        state["config"]["model"][section].pop("name")
    state["config"]["model"]["predictor"].pop("first_offset")
    state["config"]["data"].pop("name")
    save_checkpoint(path, state)
    assert cpc.load(path).predictors.offsets == (1, 2, 3, 4)
    train(small_config(corpus_dir, **{"train.max_steps": 6}), tmp_path / "run", resume=True)
    assert load_checkpoint(path)["step"] == 6
