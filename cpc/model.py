"""CPC: encoder -> context network -> per-offset predictors -> InfoNCE (paper, figure 1).

Shape legend: B batch, S samples, T frames, C latent channels, H context size, K offsets
ahead; an image's patch grid (rows, cols) stands where T stands for sequences.

    z_t = g_enc(x)          encoder          (B, S) or patches -> (B, T, C) or (B, rows, cols, C)
    c_t = g_ar(z_{<=t})     context network  (B, *grid, C)     -> (B, *grid, H), causal along the first grid axis
    W_k c_t, k in offsets   predictors       (B, *grid, H)     -> (B, *grid, K, C)
    L = InfoNCE(W_k c_t, z) criterion        ...               -> metrics: loss, accuracy (and MI bound) per k

``CPC`` only composes modules it is given; ``build_model(config)`` turns a config into
modules through the registries of :mod:`cpc.registry`, each part chosen by its ``name``.
A training-time input transform that a modality registers (speech: waveform augmentation,
``train.augment``) is one more module it may be given, used by ``forward`` in training mode only.
What only some inputs have (audio's minimum length, chunked streaming) the encoder provides.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from cpc import registry
from cpc.config import Config, ConfigError, ModelConfig, variant_schema

LAYERS = ("context", "encoder")


class CPC(nn.Module):
    """Contrastive Predictive Coding model. ``model(inputs, lengths, generator=g)`` -> the criterion's metrics dict
    (cpc.objectives: "loss", "accuracy_per_step", ...)."""

    def __init__(
        self,
        encoder: nn.Module,
        context: nn.Module,
        predictors: nn.Module,
        criterion: nn.Module,
        *,
        augment: nn.Module | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.context = context
        self.predictors = predictors
        self.criterion = criterion
        # A training-time input transform (speech: cpc.speech.augment), used by forward in training
        # mode only; its ``side`` is "past" (the context network's input) or "both". No state.
        self.augment = augment
        self.config = config  # the model section it was built from, saved in checkpoints

    @property
    def downsample_rate(self) -> int:
        """Input samples per feature frame (160 = 10 ms at 16 kHz for the paper's encoder; audio only)."""
        return self.encoder.downsample_rate

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Feature frames for inputs of ``lengths`` samples."""
        return self.encoder.output_lengths(lengths)

    @property
    def minimum_samples(self) -> int:
        """Audio: the fewest samples that give one feature frame (the encoder's)."""
        return self.encoder.minimum_samples

    def forward(
        self, inputs: Tensor, lengths: Tensor | None = None, *, generator: torch.Generator, augment: bool = True
    ) -> dict[str, Tensor]:
        """inputs as the encoder declares ((B, S) waveforms, (B, rows, cols, P, P) patches), lengths
        (B,) or None -> the loss with per-offset accuracy (and the MI bound, for InfoNCE and NT-Xent).

        With ``self.augment`` in training mode (and ``augment``, which the training loop turns off
        before ``train.augment.start_step``), ``generator`` also draws the augmentation (before the
        negatives): side "both" encodes the augmented window only; side "past" encodes the clean
        window for the targets and negatives and the augmented one for the context network."""
        augment = self.augment if self.training and augment else None  # training windows only
        side = augment.side if augment is not None else None
        if side == "both":
            inputs = augment(inputs, lengths, generator)  # (B, S): one augmented window feeds everything
        latents, latent_lengths = self.encoder(inputs, lengths)  # (B, T, C) or (B, rows, cols, C); (B,): the targets z
        seen = (
            self.encoder(augment(inputs, lengths, generator), lengths)[0] if side == "past" else latents
        )  # what g_ar reads
        context, _ = self.context(seen)  # (B, *grid, H)
        predictions = self.predictors(context)  # (B, *grid, K, C)
        return self.criterion(predictions, latents, latent_lengths, generator, offsets=self.predictors.offsets)

    def extract_features(
        self, inputs: Tensor, lengths: Tensor | None = None, layer: str = "context"
    ) -> tuple[Tensor, Tensor]:
        """Features for downstream use: inputs as the encoder declares, lengths (B,) or None
        -> features (B, *grid, H or C), feature_lengths (B,) along the grid's first axis.

        Audio: waveforms (B, S) float at 16 kHz, lengths in samples -> (B, T, H or C); frame t
        covers samples [t * downsample_rate, (t + 1) * downsample_rate) and frames past a
        sequence's length are padding. Images: patches (B, rows, cols, P, P) -> (B, rows, cols, H or C).
        ``layer="context"``: c_t (H channels); ``"encoder"``: z_t (C channels). Call
        ``model.eval()`` first and wrap in ``torch.inference_mode()`` when no gradients are needed.
        The encoder checks the input's shape (audio must also be float and at least
        :attr:`minimum_samples` long: the encoder's ``check_inputs``).
        """
        if layer not in LAYERS:
            raise ValueError(f"layer={layer!r}: expected one of {LAYERS}")
        check_inputs = getattr(self.encoder, "check_inputs", None)
        if check_inputs is not None:
            check_inputs(inputs)
        latents, latent_lengths = self.encoder(inputs, lengths)  # (B, *grid, C)
        if layer == "encoder":
            return latents, latent_lengths
        return self.context_features(latents, latent_lengths), latent_lengths  # (B, *grid, H)

    def context_features(self, latents: Tensor, lengths: Tensor) -> Tensor:
        """c_t for latents (B, *grid, C) with lengths (B,) -> (B, *grid, H). A context network that runs
        backwards (an imported CPC_audio ``cpc_mode=reverse`` model) starts from each sequence's own last frame."""
        if getattr(self.context, "reverse", False):
            return self.context(latents, lengths=lengths)[0]
        return self.context(latents)[0]

    def stream(self, layer: str = "context"):
        """A stateful extractor for audio arriving in chunks: ``stream(chunk)`` -> (T_new, H or C),
        ``stream.flush()`` at the end; together they equal ``extract_features`` (the encoder's
        ``streaming_extractor``: cpc.speech.streaming for raw audio)."""
        streaming_extractor = getattr(self.encoder, "streaming_extractor", None)
        if streaming_extractor is None:
            raise ValueError(f"streaming needs the conv encoder, got {type(self.encoder).__name__}")
        return streaming_extractor(self, layer)


def build_model(config: Config | ModelConfig | DictConfig | dict) -> CPC:
    """Build a CPC model from a full config (uses its ``model`` section, and a training-time
    transform such as ``train.augment`` when it turns one on) or a model section (none)."""
    if isinstance(config, dict):
        config = OmegaConf.create(config)
    augment = None
    if "model" in config:  # a full config: its train sections, when it has them
        augment = _input_transform(config)
        config = config.model
    schema = variant_schema({"model": config}).model  # typed by the variants the config names
    model_config: ModelConfig = OmegaConf.merge(schema, config)
    sections = registry.sections()
    parts = {
        section: sections[f"model.{section}"][model_config[section].name].build
        for section in ("encoder", "context", "predictor", "loss")
    }
    encoder = parts["encoder"](model_config.encoder)
    context = parts["context"](model_config.context, encoder.output_size)
    predictors = parts["predictor"](model_config.predictor, context.output_size, encoder.output_size)
    criterion = parts["loss"](model_config.loss)
    return CPC(
        encoder,
        context,
        predictors,
        criterion,
        augment=augment,
        config=OmegaConf.to_container(model_config, resolve=True, enum_to_str=True),
    )


def _input_transform(config: Config | DictConfig) -> nn.Module | None:
    """The training-time input transform a full config turns on (a modality's ``train.<key>``
    section, e.g. speech's ``train.augment``), checked against ``data.name``; None when none is on."""
    data_name = OmegaConf.select(config, "data.name", default=registry.DEFAULT_NAMES["data"])
    transform = None
    for key, section in registry.train_sections().items():
        built = section.build(OmegaConf.select(config, f"train.{key}", default=None))
        if built is None:
            continue
        if data_name not in section.data_names:
            raise ConfigError(
                f"train.{key} works on {section.what}; data.name={data_name!r} is not {' or '.join(section.data_names)}"
            )
        transform = built
    return transform
