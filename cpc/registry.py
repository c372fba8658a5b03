"""The registries: every swappable part of a run, chosen in the config by ``name``.

Each entry pairs a variant's typed config class with the function that builds it. When a
config loads, the class of the variant a section names types that section (cpc.config), so
a key the variant does not have fails, naming it.

The core's own variants (context networks, predictors, objectives) are listed here. The
modalities fill in the rest: each modality package (cpc.speech, cpc.image, ...) calls
:func:`register` for its encoder, its data source and any section of its own when it is
imported, and :func:`load_modalities` imports the packages named in :mod:`cpc.modalities`
the first time a registry is read. So this module names no modality, and adding one
touches no core file.

    section           builder signature                                   returns
    model.encoder     build(config)                                       inputs -> latents (B, *grid, C), lengths
    model.context     build(config, input_size)                           latents -> context (B, *grid, H)
    model.predictor   build(config, context_size, latent_size)            context -> predictions (B, *grid, K, C); .offsets
    model.loss        build(config)                                       (predictions, latents, lengths, generator) -> metrics dict
    data              build(config, rank=, world_size=, start_step=, device=)   a cpc.data.DataSource
    train.<key>       build(section) -> nn.Module or None                 training-time input transform (CPC's ``augment``)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cpc.context import RecurrentContextConfig, build_recurrent_context
from cpc.objectives import (
    BinaryConfig,
    InfoNCEConfig,
    MarginConfig,
    NTXentConfig,
    TripletConfig,
    build_binary,
    build_infonce_criterion,
    build_margin,
    build_nt_xent,
    build_triplet,
)
from cpc.predictors import (
    LinearPredictorConfig,
    TransformerPredictorConfig,
    build_linear_predictors,
    build_transformer_predictors,
)


@dataclass(frozen=True)
class Variant:
    config: type  # the dataclass that types this variant's config section
    build: Callable[..., Any]


@dataclass(frozen=True)
class TrainSection:
    """A section a modality adds under ``train`` (speech: ``train.augment``): its schema, and the
    builder of a training-time input transform (None when the section turns it off), which only
    the data sources in ``data_names`` can feed."""

    config: type
    build: Callable[[Any], Any]
    data_names: tuple[str, ...] = field(default=())
    what: str = ""  # the inputs it works on, for the error message ("speech waveforms")


ENCODERS: dict[str, Variant] = {}  # filled by the modalities: speech "conv", image "patch_resnet", text "sentence_conv"
CONTEXT_NETWORKS: dict[str, Variant] = {
    "gru": Variant(RecurrentContextConfig, build_recurrent_context),
    "lstm": Variant(RecurrentContextConfig, build_recurrent_context),
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
DATA_SOURCES: dict[str, Variant] = {}  # filled by the modalities
TRAIN_SECTIONS: dict[str, TrainSection] = {}  # filled by the modalities
# ``cpc probe <kind>`` commands a modality adds: kind -> the module whose register_probe(kinds) adds it.
PROBES: dict[str, str] = {}
# ``cpc demo <name>``: name -> the module that declares and runs that demo (the contract is in cpc.eval.demo).
DEMOS: dict[str, str] = {}
DEFAULT_DEMO = "speech"  # what ``cpc demo`` runs without a name; a name only, as DEFAULT_NAMES
# ``cpc compare`` on a recipe: its data.name -> the module that compares such recipes (the contract is in cpc.eval.compare).
COMPARES: dict[str, str] = {}

SECTIONS: dict[str, dict[str, Variant]] = {
    "model.encoder": ENCODERS,
    "model.context": CONTEXT_NETWORKS,
    "model.predictor": PREDICTORS,
    "model.loss": LOSSES,
    "data": DATA_SOURCES,
}
# What a section without a ``name`` means: the paper's setup, raw audio (and every config saved
# before the sections had names). Names only: the speech package registers what they mean.
DEFAULT_NAMES = {
    "model.encoder": "conv",
    "model.context": "gru",
    "model.predictor": "linear",
    "model.loss": "infonce",
    "data": "speech",
}


def register(section: str, name: str, config: type, build: Callable[..., Any]) -> None:
    """Add the variant ``name`` to ``section`` (a key of :data:`SECTIONS`); a modality calls this
    when it is imported. Registering the same variant twice is harmless; another one under a
    taken name is an error."""
    table = SECTIONS[section]
    entry = Variant(config, build)
    if table.get(name, entry) != entry:
        raise ValueError(f"{section}.name={name!r} is already registered (by {table[name].build.__module__})")
    table[name] = entry


def register_train_section(key: str, section: TrainSection) -> None:
    """Add ``train.<key>`` (e.g. speech's ``train.augment``); see :class:`TrainSection`."""
    if TRAIN_SECTIONS.get(key, section) != section:
        raise ValueError(f"train.{key} is already registered")
    TRAIN_SECTIONS[key] = section


def register_probe(kind: str, module: str) -> None:
    """Add ``cpc probe <kind>``: ``module`` (imported when the command line is built) has ``register_probe(kinds)``."""
    PROBES[kind] = module


def probes() -> dict[str, str]:
    """:data:`PROBES`, with every modality registered."""
    load_modalities()
    return PROBES


def register_demo(name: str, module: str) -> None:
    """Add ``cpc demo <name>``: ``module`` (imported when the command line is built) declares and runs it."""
    DEMOS[name] = module


def demos() -> dict[str, str]:
    """:data:`DEMOS`, with every modality registered."""
    load_modalities()
    return DEMOS


def register_compare(data_name: str, module: str) -> None:
    """Add ``cpc compare`` for recipes with ``data.name: <data_name>``: ``module`` (imported when the command
    line is built) declares the comparisons it runs and runs them."""
    COMPARES[data_name] = module


def compares() -> dict[str, str]:
    """:data:`COMPARES`, with every modality registered."""
    load_modalities()
    return COMPARES


_loaded = False


def load_modalities() -> None:
    """Import the modality packages of :data:`cpc.modalities.MODALITIES` once, so that each
    registers its parts. Every reader of the registries (config loading, ``build_model``, the
    training loop) calls this first; it is cheap after the first call."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    # By name, at run time: the composition list is not part of the core.
    importlib.import_module("cpc.modalities").load()


def sections() -> dict[str, dict[str, Variant]]:
    """:data:`SECTIONS`, with every modality registered."""
    load_modalities()
    return SECTIONS


def train_sections() -> dict[str, TrainSection]:
    """:data:`TRAIN_SECTIONS`, with every modality registered."""
    load_modalities()
    return TRAIN_SECTIONS
