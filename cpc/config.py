"""Typed configuration: dataclass schemas, YAML recipes and dotted command-line overrides.

A recipe (``recipes/speech/paper.yaml``) is merged into the :class:`Config` schema with
OmegaConf, then ``key=value`` overrides are applied (``train.max_steps=200``). Unknown keys
and values of the wrong type fail with :class:`ConfigError` naming the key. The resolved
config is saved in every run directory and inside every checkpoint, so a checkpoint
rebuilds its model without the recipe.

The schemas here are the ones every run has (optimiser, training loop). Each swappable part
(``model.encoder``, ``model.context``, ``model.predictor``, ``model.loss``, ``data``) is typed by
the config class of the variant its ``name`` picks, which lives beside that variant and is
found through :mod:`cpc.registry`; a modality adds its own sections there (speech:
``train.augment``). The defaults are the paper's (van den Oord et al. 2018, section 3.1):
a GRU with 256 units, K = 12 prediction steps, Adam at 2e-4; the speech encoder and windows
are in :mod:`cpc.speech.config`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cpc import registry
from cpc.context import RecurrentContextConfig
from cpc.errors import ConfigError
from cpc.objectives import (
    BinaryConfig,
    InfoNCEConfig,
    MarginConfig,
    Mining,
    NegativeScope,
    NTXentConfig,
    Score,
    TripletConfig,
)
from cpc.predictors import LinearPredictorConfig, PredictorInit, TransformerPredictorConfig
from cpc.runtime import plain

# The core variants' schemas, importable from here as before (each lives beside its variant).
__all__ = [
    "BinaryConfig",
    "Config",
    "ConfigError",
    "InfoNCEConfig",
    "LinearPredictorConfig",
    "MarginConfig",
    "Mining",
    "ModelConfig",
    "NTXentConfig",
    "NegativeScope",
    "OptimConfig",
    "PredictorInit",
    "RecurrentContextConfig",
    "Score",
    "TrainConfig",
    "TransformerPredictorConfig",
    "TripletConfig",
    "from_container",
    "load_config",
    "to_container",
    "variant_schema",
]


# Settings with a fixed set of values are enums, so a typo fails when the config loads
# ("optim.schedule: Invalid value 'cosin', expected one of [constant, cosine, linear]"),
# not at the step that first reads it. They subclass str: ``config.optim.schedule == "cosine"``.


class Schedule(str, Enum):
    constant = "constant"
    cosine = "cosine"
    linear = "linear"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, Enum):
    auto = "auto"  # bf16 autocast on CUDA, fp32 on CPU
    fp32 = "fp32"
    bf16 = "bf16"


class Logger(str, Enum):
    none = "none"
    wandb = "wandb"


# ----------------------------------------------------------------------------- variants
# Each part of the model and the data source is chosen by ``name`` from a registry
# (cpc.registry), and each variant keeps its typed config class beside its module
# (cpc/context.py, cpc/speech/config.py, cpc/image/encoder.py, ...). When a config loads, each
# section is typed by the class its ``name`` picks, so a key that variant does not have fails,
# naming the key.


@dataclass
class ModelConfig:
    # Typed at load time by the variant each ``name`` picks (see variant_schema).
    encoder: Any = None
    context: Any = None
    predictor: Any = None
    loss: Any = None


@dataclass
class OptimConfig:
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: Schedule = Schedule.constant  # decay after warmup to min_lr_ratio * lr
    min_lr_ratio: float = 0.0
    grad_clip: float = 0.0  # max global gradient norm; 0 disables


@dataclass
class TrainConfig:
    seed: int = 0  # any non-negative integer
    batch_size: int = 8  # per process
    max_steps: int = 1000
    log_every: int = 10
    valid_every: int = 500
    valid_batches: int = 8
    checkpoint_every: int = 500
    keep_checkpoints: int = 3  # periodic step_*.pt files kept besides last.pt; 0 keeps none
    # Start from this checkpoint's model (its model section replaces the recipe's, weights loaded
    # strictly; optimizer and step start afresh): e.g. one written by ``cpc import cpc_audio``.
    init_from: str | None = None
    device: Device = Device.auto
    precision: Precision = Precision.auto
    threads: int = 0  # torch intra-op threads on CPU; 0 leaves torch's default
    compile: bool = False  # torch.compile the encoder (measure first: cpc bench train --compile)
    tf32: bool = True  # on CUDA, TF32 for the float32 matmuls and convolutions left under autocast
    # The conv encoder's memory layout, not its model: unset lets the encoder pick (channels-last
    # on the CPU with the channel norm: docs/speed.md); true or false forces one.
    channels_last: bool | None = None
    logger: Logger = Logger.none  # wandb honours WANDB_MODE=offline|disabled
    wandb_project: str = "cpc"
    progress: bool = True  # tqdm progress bar
    # A modality may add sections here (cpc.registry.TRAIN_SECTIONS; speech: train.augment).


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: Any = None  # typed by data.name, like the model's parts
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _wrap(error: OmegaConfBaseException, where: str) -> ConfigError:
    key = getattr(error, "full_key", None) or getattr(error, "key", None)
    message = (getattr(error, "msg", None) or str(error)).splitlines()[0]
    return ConfigError(f"{where}: bad config key {key!r}: {message}" if key else f"{where}: {message}")


def _variant_name(raw: DictConfig, section: str, variants: dict, where: str) -> str:
    """The variant a section asks for (``name``, or the schema default) and check it is registered."""
    name = OmegaConf.select(raw, f"{section}.name", default=None)
    name = registry.DEFAULT_NAMES[section] if name is None else name
    if name not in variants:
        raise ConfigError(f"{where}: bad config key '{section}.name': {name!r} is not one of {sorted(variants)}")
    return name


def variant_schema(
    raw: DictConfig | dict, where: str = "config", *, layers: list[tuple[str, DictConfig]] = ()
) -> DictConfig:
    """The typed schema for a config: :class:`Config` with each variant section (``model.encoder``,
    ``model.context``, ``model.predictor``, ``model.loss``, ``data``) typed by the config class
    of the variant its ``name`` picks. ``raw`` is the untyped recipe + overrides; ``layers``,
    the (source, values) it was merged from, lets an unknown name be reported where it was set."""
    raw = OmegaConf.create(raw) if isinstance(raw, dict) else raw
    schema = OmegaConf.structured(Config)
    for section, variants in registry.sections().items():
        setters = [
            source for source, layer in layers if OmegaConf.select(layer, f"{section}.name", default=None) is not None
        ]
        name = _variant_name(raw, section, variants, setters[-1] if setters else where)
        parent, key = section.rsplit(".", 1) if "." in section else ("", section)
        node = OmegaConf.select(schema, parent) if parent else schema
        node[key] = OmegaConf.structured(variants[name].config)
    OmegaConf.set_struct(schema.train, False)  # the sections the modalities add under train
    for key, section in registry.train_sections().items():
        schema.train[key] = OmegaConf.structured(section.config)
    OmegaConf.set_struct(schema.train, True)
    return schema


# Lower bounds the types cannot express; keys a variant does not have are skipped.
MINIMUMS = {
    "train.seed": 0,
    "train.max_steps": 1,
    "train.batch_size": 1,
    "train.log_every": 1,
    "train.valid_every": 1,
    "train.checkpoint_every": 1,
    "train.valid_batches": 0,
    "train.keep_checkpoints": 0,
    "train.threads": 0,
    "data.num_workers": 0,
    "data.window": 1,
    "model.loss.num_negatives": 1,
    "model.predictor.prediction_steps": 1,
    "model.predictor.first_offset": 1,
    "model.context.hidden_size": 1,
    "model.context.num_layers": 1,
    "optim.warmup_steps": 0,
    "data.patch_size": 1,
    "data.patch_stride": 1,
    "data.padded_size": 1,
}


def _check(config: DictConfig, where: str) -> DictConfig:
    for key, minimum in MINIMUMS.items():
        value = OmegaConf.select(config, key, default=None)
        if value is not None and value < minimum:
            raise ConfigError(f"{where}: bad config key {key!r}: {value} is below the minimum {minimum}")
    patch = [
        OmegaConf.select(config, f"data.{key}", default=None) for key in ("padded_size", "patch_size", "patch_stride")
    ]
    if None not in patch:  # an image grid: whole patches, every stride, inside the padded image
        padded, size, stride = patch
        if padded < size or (padded - size) % stride:
            raise ConfigError(
                f"{where}: data.padded_size={padded}, data.patch_size={size}, data.patch_stride={stride}: the padded image "
                f"does not hold whole patches every stride (needs padded_size >= patch_size and (padded_size - patch_size) % patch_stride == 0)"
            )
    return config


def _read_yaml(path) -> DictConfig:
    try:
        with open(path, encoding="utf-8") as handle:
            content = yaml.safe_load(handle)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML recipe (not UTF-8 text)") from None
    except yaml.YAMLError as error:  # a syntax error: say where, in one line
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{at}: {problem}") from None
    # An empty file would train the built-in defaults without a word; a list is no recipe.
    if content is None:
        raise ConfigError(
            f"{path}: the recipe is empty; give at least one section (e.g. copy recipes/speech/tiny.yaml)"
        )
    if not isinstance(content, dict):
        raise ConfigError(
            f"{path}: a recipe is a mapping of sections (model:, data:, train:, ...), this file's top level is a {type(content).__name__}"
        )
    try:
        return OmegaConf.load(path)
    except yaml.YAMLError as error:  # a syntax error: say where, in one line
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{at}: {problem}") from None
    except OmegaConfBaseException as error:
        raise _wrap(error, str(path)) from None


def _switch_variants(layers: list[tuple[str, DictConfig]]) -> None:
    """A layer that names another variant for a section (``model.context.name=row_gru`` over a
    recipe's ``masked_conv``) starts that section afresh: the earlier layers' keys for it belong
    to the old variant and are dropped, so the section holds the new variant's defaults plus
    what this and later layers set. Variants that share a config class (gru and lstm) keep them."""
    for section, default in registry.DEFAULT_NAMES.items():
        current = default
        for index, (_, layer) in enumerate(layers):
            name = OmegaConf.select(layer, f"{section}.name", default=None)
            variants = registry.sections()[section]
            if (
                name is None
                or name == current
                or (name in variants and current in variants and variants[name].config is variants[current].config)
            ):
                current = current if name is None else name
                continue
            for _, earlier in layers[:index]:
                parent, key = section.rsplit(".", 1) if "." in section else ("", section)
                node = OmegaConf.select(earlier, parent) if parent else earlier
                if isinstance(node, DictConfig) and key in node:
                    del node[key]
            current = name


def load_config(recipe: str | os.PathLike | None = None, overrides: list[str] | None = None) -> DictConfig:
    """Schema defaults, then the recipe, then ``key=value`` overrides; validated as it goes.

    ``recipe`` is a YAML file or the name of a shipped recipe (``speech/tiny``, see
    :func:`cpc.resources.list_recipes`). The variants named in the recipe and overrides
    (``model.encoder.name=...``) decide which typed schema the values are checked against.
    """
    from cpc.resources import recipe_path, resolve_data_root

    where = "config"
    layers: list[tuple[str, DictConfig]] = []
    if recipe is not None:
        path = recipe_path(recipe)
        where = str(path)
        layers.append((where, _read_yaml(path)))
    for override in overrides or []:
        if "=" not in override:
            raise ConfigError(f"override {override!r} is not of the form key=value")
        try:
            layers.append((f"override {override!r}", OmegaConf.from_dotlist([override])))
        except OmegaConfBaseException as error:
            raise _wrap(error, f"override {override!r}") from None
    _switch_variants(layers)
    try:
        raw = OmegaConf.merge(*(layer for _, layer in layers)) if layers else OmegaConf.create()
    except OmegaConfBaseException as error:
        raise _wrap(error, where) from None
    config = variant_schema(raw, where, layers=layers)
    for source, layer in layers:  # one at a time, so an error names the recipe or the override
        try:
            config = OmegaConf.merge(config, layer)
        except OmegaConfBaseException as error:
            raise _wrap(error, source) from None
    if "root" in config.data:
        config.data.root = resolve_data_root(config.data.root)  # the recipes' data/sample, also outside the checkout
    return _check(config, where)


def from_container(data: dict[str, Any]) -> DictConfig:
    """Validate a plain dict (e.g. read from a checkpoint) against the schema.

    Configs saved before the variants had names (no ``name`` in ``model.loss`` or ``data``)
    get the defaults: they described exactly those variants."""
    try:
        return _check(OmegaConf.merge(variant_schema(data), data), "config")
    except OmegaConfBaseException as error:
        raise _wrap(error, "config") from None


def to_container(config: DictConfig) -> dict[str, Any]:
    """Plain Python containers (enums as their string values), e.g. for checkpoints and JSON."""
    return OmegaConf.to_container(config, resolve=True, enum_to_str=True)


def describe_keys() -> str:
    """Every config key with its type and default, one per line (``cpc train --help``)."""
    import dataclasses
    import typing

    def type_name(hint) -> str:
        if isinstance(hint, type) and issubclass(hint, Enum):
            return "|".join(member.value for member in hint)
        if typing.get_origin(hint) is typing.Union:
            return " or ".join("null" if arg is type(None) else type_name(arg) for arg in typing.get_args(hint))
        if typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint)
            if dataclasses.is_dataclass(item):
                return "list of {" + ", ".join(f.name for f in dataclasses.fields(item)) + "}"
            return f"list of {type_name(item)}"
        return getattr(hint, "__name__", str(hint))

    def show(value) -> str:
        if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            return (
                "["
                + ", ".join("(" + ", ".join(str(v) for v in dataclasses.astuple(item)) + ")" for item in value)
                + "]"
            )
        return str(plain(value))

    lines = []
    SECTIONS = registry.sections()

    def walk(schema, prefix: str, variant: bool = False) -> None:
        hints = typing.get_type_hints(schema)
        for item in dataclasses.fields(schema):
            if variant and item.name == "name":  # already in the variant's header line
                continue
            default = item.default_factory() if item.default is dataclasses.MISSING else item.default
            section = f"{prefix}{item.name}"
            if section in SECTIONS:  # a variant section: the keys of each variant
                variants: dict[type, list[str]] = {}
                for name, variant in SECTIONS[section].items():
                    variants.setdefault(variant.config, []).append(name)
                for variant_config, names in variants.items():
                    lines.append(f"  {section}.name={'|'.join(names)}:")
                    walk(variant_config, f"{section}.", variant=True)
            elif dataclasses.is_dataclass(hints[item.name]):
                walk(hints[item.name], f"{section}.")
            else:
                lines.append(f"  {section}: {type_name(hints[item.name])} = {show(default)}")

    walk(Config, "")
    for key, section in registry.train_sections().items():  # train is the last section: its additions follow it
        walk(section.config, f"train.{key}.")
    return "\n".join(lines)
