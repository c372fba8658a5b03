"""The registries: every swappable part of a run, chosen in the config by ``name``.

Each entry pairs a variant's typed config class with the function that builds it. When a
config loads, the class of the variant a section names types that section (cpc.config), so
a key the variant does not have fails, naming it. Adding a variant is one file (its config
dataclass, module and builder) and one line here.

    section           builder signature                                   returns
    model.encoder     build(config)                                       inputs -> latents (B, *grid, C), lengths
    model.context     build(config, input_size)                           latents -> context (B, *grid, H)
    model.predictor   build(config, context_size, latent_size)            context -> predictions (B, *grid, K, C); .offsets
    model.loss        build(config)                                       (predictions, latents, lengths, generator) -> metrics dict
    data              build(config, rank=, world_size=, start_step=, device=)   a cpc.data.DataSource
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from cpc.config import (
    BinaryConfig, ConvEncoderConfig, InfoNCEConfig, LinearPredictorConfig, MarginConfig, NTXentConfig, RecurrentContextConfig, SpeechDataConfig,
    TransformerPredictorConfig, TripletConfig,
)
from cpc.context import build_recurrent_context
from cpc.data.resident import build_speech_data
from cpc.encoder import build_conv_encoder
from cpc.image.context import MaskedConvContextConfig, RowGRUContextConfig, build_masked_conv_context, build_row_gru_context
from cpc.image.encoder import PatchEncoderConfig, build_patch_encoder
from cpc.image.source import FashionMNISTConfig, FashionMNISTPatches
from cpc.objectives import build_binary, build_infonce_criterion, build_margin, build_nt_xent, build_triplet
from cpc.predictors import build_linear_predictors, build_transformer_predictors
from cpc.text.encoder import SentenceEncoderConfig, build_sentence_encoder
from cpc.text.source import TextData, TextDataConfig


@dataclass(frozen=True)
class Variant:
    config: type  # the dataclass that types this variant's config section
    build: Callable[..., Any]


ENCODERS: dict[str, Variant] = {
    "conv": Variant(ConvEncoderConfig, build_conv_encoder),  # raw audio (B, S) -> (B, T, C)
    "patch_resnet": Variant(PatchEncoderConfig, build_patch_encoder),  # patches (B, G, G, P, P) -> (B, G, G, C)
    "sentence_conv": Variant(SentenceEncoderConfig, build_sentence_encoder),  # n-gram ids (B, T, L, G) -> (B, T, C)
}
CONTEXT_NETWORKS: dict[str, Variant] = {
    "gru": Variant(RecurrentContextConfig, build_recurrent_context),
    "lstm": Variant(RecurrentContextConfig, build_recurrent_context),
    "masked_conv": Variant(MaskedConvContextConfig, build_masked_conv_context),  # image grids, top to bottom
    "row_gru": Variant(RowGRUContextConfig, build_row_gru_context),
}
PREDICTORS: dict[str, Variant] = {
    "linear": Variant(LinearPredictorConfig, build_linear_predictors),
    "transformer": Variant(TransformerPredictorConfig, build_transformer_predictors),  # modified CPC (CPC_audio)
}
LOSSES: dict[str, Variant] = {
    # cpc.objectives: one criterion samples and scores the candidates, each objective is a pure function.
    "infonce": Variant(InfoNCEConfig, build_infonce_criterion),  # CPC eq. 4
    "nt_xent": Variant(NTXentConfig, build_nt_xent),  # SimCLR
    "margin": Variant(MarginConfig, build_margin),  # Chopra, Hadsell, LeCun 2005
    "triplet": Variant(TripletConfig, build_triplet),  # FaceNet, with mining
    "binary": Variant(BinaryConfig, build_binary),  # wav2vec 1.0
}
DATA_SOURCES: dict[str, Variant] = {
    "speech": Variant(SpeechDataConfig, build_speech_data),  # the loader, or the corpus held on the device
    "fashion_mnist": Variant(FashionMNISTConfig, FashionMNISTPatches),
    "text": Variant(TextDataConfig, TextData),
}

SECTIONS: dict[str, dict[str, Variant]] = {
    "model.encoder": ENCODERS, "model.context": CONTEXT_NETWORKS, "model.predictor": PREDICTORS, "model.loss": LOSSES,
    "data": DATA_SOURCES,
}
# What a section without a ``name`` means: the paper's speech setup (and every config saved
# before the sections had names).
DEFAULT_NAMES = {"model.encoder": "conv", "model.context": "gru", "model.predictor": "linear", "model.loss": "infonce", "data": "speech"}
