"""CPC: encoder -> context network -> per-step predictors -> InfoNCE (paper, figure 1).

Shape legend: B batch, S samples, T frames, C latent channels, H context size, K steps ahead.

    z_t = g_enc(x)          encoder          (B, S)       -> (B, T, C)
    c_t = g_ar(z_{<=t})     context network  (B, T, C)    -> (B, T, H)
    W_k c_t, k = 1..K       predictors       (B, T, H)    -> (B, T, K, C)
    L = InfoNCE(W_k c_t, z) criterion        ...          -> loss, accuracy and MI bound per k

``CPC`` only composes modules it is given; ``build_model(config)`` turns a config into
modules through small registries (``ENCODERS``, ``CONTEXT_NETWORKS``, ``PREDICTORS``).
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from cpc.config import Config, ModelConfig
from cpc.context import CONTEXT_NETWORKS
from cpc.encoder import ENCODERS
from cpc.infonce import InfoNCE, InfoNCEOutput
from cpc.predictors import PREDICTORS
from cpc.streaming import StreamingExtractor

LAYERS = ("context", "encoder")


class CPC(nn.Module):
    """Contrastive Predictive Coding model. ``model(waveforms, lengths, generator=g)`` -> InfoNCEOutput."""

    def __init__(self, encoder: nn.Module, context: nn.Module, predictors: nn.Module, criterion: nn.Module, *, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.context = context
        self.predictors = predictors
        self.criterion = criterion
        self.config = config  # the model section it was built from, saved in checkpoints

    @property
    def downsample_rate(self) -> int:
        """Input samples per feature frame (160 = 10 ms at 16 kHz for the paper's encoder)."""
        return self.encoder.downsample_rate

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Feature frames for inputs of ``lengths`` samples."""
        return self.encoder.output_lengths(lengths)

    def forward(self, waveforms: Tensor, lengths: Tensor | None = None, *, generator: torch.Generator) -> InfoNCEOutput:
        """waveforms (B, S), lengths (B,) samples -> InfoNCE loss with per-step accuracy and MI bound."""
        latents, latent_lengths = self.encoder(waveforms, lengths)  # (B, T, C), (B,)
        context, _ = self.context(latents)  # (B, T, H)
        predictions = self.predictors(context)  # (B, T, K, C)
        return self.criterion(predictions, latents, latent_lengths, generator)

    def extract_features(self, waveforms: Tensor, lengths: Tensor | None = None, layer: str = "context") -> tuple[Tensor, Tensor]:
        """Features for downstream use: waveforms (B, S) float at 16 kHz, lengths (B,) samples
        -> features (B, T, H or C), feature_lengths (B,).

        ``layer="context"``: c_t (H channels); ``"encoder"``: z_t (C channels). Frame t covers
        samples [t * downsample_rate, (t + 1) * downsample_rate); frames past a sequence's
        length are padding. Call ``model.eval()`` first and wrap in ``torch.inference_mode()``
        when no gradients are needed.
        """
        if layer not in LAYERS:
            raise ValueError(f"layer={layer!r}: expected one of {LAYERS}")
        if waveforms.dim() != 2:
            raise ValueError(f"expected waveforms of shape (B, S), got {tuple(waveforms.shape)}")
        latents, latent_lengths = self.encoder(waveforms, lengths)  # (B, T, C)
        if layer == "encoder":
            return latents, latent_lengths
        context, _ = self.context(latents)  # (B, T, H)
        return context, latent_lengths

    def stream(self, layer: str = "context") -> StreamingExtractor:
        """A stateful extractor for audio arriving in chunks: ``stream(chunk)`` -> (T_new, H or C),
        ``stream.flush()`` at the end; together they equal ``extract_features`` (cpc.streaming)."""
        return StreamingExtractor(self, layer)


def build_model(config: Config | ModelConfig | DictConfig | dict) -> CPC:
    """Build a CPC model from a full config (uses its ``model`` section) or a model config."""
    if isinstance(config, dict):
        config = OmegaConf.create(config)
    if "model" in config:
        config = config.model
    model_config: ModelConfig = OmegaConf.merge(OmegaConf.structured(ModelConfig), config)
    for section, registry in (("encoder", ENCODERS), ("context", CONTEXT_NETWORKS), ("predictor", PREDICTORS)):
        name = model_config[section].name
        if name not in registry:
            raise ValueError(f"model.{section}.name={name!r}: expected one of {sorted(registry)}")
    encoder = ENCODERS[model_config.encoder.name](model_config.encoder)
    context = CONTEXT_NETWORKS[model_config.context.name](model_config.context, encoder.output_size)
    predictors = PREDICTORS[model_config.predictor.name](model_config.predictor, context.output_size, encoder.output_size)
    criterion = InfoNCE(model_config.loss.num_negatives, model_config.loss.negative_scope)
    return CPC(encoder, context, predictors, criterion, config=OmegaConf.to_container(model_config, resolve=True, enum_to_str=True))
