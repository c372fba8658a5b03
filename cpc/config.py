"""Typed configuration: dataclass schemas, YAML recipes and dotted command-line overrides.

A recipe (``recipes/speech/paper.yaml``) is merged into the :class:`Config` schema with
OmegaConf, then ``key=value`` overrides are applied (``train.max_steps=200``). Unknown keys
and values of the wrong type fail with :class:`ConfigError` naming the key. The resolved
config is saved in every run directory and inside every checkpoint, so a checkpoint
rebuilds its model without the recipe.

The defaults below are the paper's (van den Oord et al. 2018, section 3.1): a 5-layer
strided convolutional encoder with 512 channels (downsampling 160 = 10 ms at 16 kHz), a GRU
with 256 units, K = 12 prediction steps, windows of 20480 samples, Adam at 2e-4.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A bad recipe or override; the message names the key."""


# Settings with a fixed set of values are enums, so a typo fails when the config loads
# ("optim.schedule: Invalid value 'cosin', expected one of [constant, cosine, linear]"),
# not at the step that first reads it. They subclass str: ``config.optim.schedule == "cosine"``.


class Norm(str, Enum):
    none = "none"
    batch = "batch"  # batch statistics: not causal in training mode, and they see the padding
    channel = "channel"  # layer norm over channels, per frame: causal
    channel_unbiased = "channel_unbiased"  # the same with the unbiased variance (CPC_audio's ChannelNorm)
    instance = "instance"  # per channel over the whole sequence (CPC_audio's instanceNorm): not causal


class PredictorInit(str, Enum):
    default = "default"  # PyTorch's
    zeros = "zeros"


class NegativeScope(str, Enum):
    batch = "batch"
    sequence = "sequence"
    other_sequences = "other_sequences"
    batch_shared = "batch_shared"  # one pool of N + 1 batch frames per step, shared by every prediction (fast on GPUs)


class Score(str, Enum):
    dot = "dot"  # z^T W_k c_t (paper, eq. 3)
    mean = "mean"  # the same divided by C (CPC_audio's mean over channels; for imported models)


class Loading(str, Enum):
    auto = "auto"  # device when training on CUDA and the corpus fits, else loader
    device = "device"  # the corpus on the training device as int16, windows cut there (cpc.data.resident)
    loader = "loader"  # DataLoader workers read each window from its file (cpc.data.speech)


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


@dataclass
class ConvLayer:
    """One strided Conv1d layer of the encoder."""

    channels: int = 512
    kernel_size: int = 10
    stride: int = 5
    padding: int = 3
    bias: bool = True


def paper_encoder_layers() -> list[ConvLayer]:
    # Paper: strides [5, 4, 2, 2, 2], filter sizes [10, 8, 4, 4, 4], 512 hidden units each.
    return [
        ConvLayer(512, 10, 5, 3),
        ConvLayer(512, 8, 4, 2),
        ConvLayer(512, 4, 2, 1),
        ConvLayer(512, 4, 2, 1),
        ConvLayer(512, 4, 2, 1),
    ]


# ----------------------------------------------------------------------------- variants
# Each part of the model and the data source is chosen by ``name`` from a registry
# (cpc.registry), and each variant has its own typed config class: the speech defaults are
# here, other modalities keep theirs beside their modules (cpc/image/encoder.py, ...). When a
# config loads, each section is typed by the class its ``name`` picks, so a key that variant
# does not have fails, naming the key.


@dataclass
class ConvEncoderConfig:
    """The raw-audio encoder: strided Conv1d layers (cpc.encoder.ConvEncoder)."""

    name: str = "conv"
    layers: list[ConvLayer] = field(default_factory=paper_encoder_layers)
    norm: Norm = Norm.none


@dataclass
class RecurrentContextConfig:
    """GRU (the paper's, 256 units) or LSTM over the latents (cpc.context.RecurrentContext)."""

    name: str = "gru"  # gru | lstm
    hidden_size: int = 256
    num_layers: int = 1
    # Run over the frames last to first (CPC_audio's cpc_mode=reverse): c_t then reads z_{>=t},
    # so the model is not causal and cannot stream.
    reverse: bool = False


@dataclass
class LinearPredictorConfig:
    """One linear map W_k per step ahead (cpc.predictors.LinearPredictors)."""

    name: str = "linear"
    prediction_steps: int = 12  # K: how many offsets are predicted
    # The first offset k; predicted offsets are first_offset .. first_offset + K - 1 positions
    # ahead along the prediction axis (frames for audio, rows for image patches).
    first_offset: int = 1
    init: PredictorInit = PredictorInit.default
    dropout: float = 0.0  # on the predictions, in training (CPC_audio's --dropout: 0.5)


@dataclass
class TransformerPredictorConfig:
    """Modified CPC (CPC_audio): one causal transformer layer over c_{<=t}, then the W_k heads
    (cpc.predictors.TransformerPredictors)."""

    name: str = "transformer"
    prediction_steps: int = 12
    first_offset: int = 1
    init: PredictorInit = PredictorInit.default  # of the W_k heads
    num_heads: int = 4  # must divide the context size H
    feedforward_size: int = 512
    dropout: float = 0.0


@dataclass
class InfoNCEConfig:
    """InfoNCE (paper, eq. 4) over sampled negatives (cpc.objectives.ContrastiveCriterion with cpc.infonce.info_nce)."""

    name: str = "infonce"
    num_negatives: int = 128  # N
    negative_scope: NegativeScope = NegativeScope.batch
    score: Score = Score.dot


# The other contrastive objectives (cpc.objectives). Each scores the same sampled candidates
# as InfoNCE (N negatives per prediction), so switching ``model.loss.name`` changes only the loss.


class Mining(str, Enum):
    all = "all"  # every negative's hinge, averaged
    hard = "hard"  # the negative closest to the anchor
    semi_hard = "semi_hard"  # the closest negative farther than the positive, inside the margin


@dataclass
class NTXentConfig:
    """NT-Xent (SimCLR): InfoNCE on cosine similarities divided by a temperature."""

    name: str = "nt_xent"
    num_negatives: int = 128
    negative_scope: NegativeScope = NegativeScope.batch
    temperature: float = 0.1  # tau


@dataclass
class MarginConfig:
    """Margin contrastive loss (Chopra, Hadsell, LeCun 2005) on L2-normalised vectors."""

    name: str = "margin"
    num_negatives: int = 128
    negative_scope: NegativeScope = NegativeScope.batch
    margin: float = 1.0  # m: negatives closer than this are pushed apart (unit vectors: distances in [0, 2])
    positive_margin: float = 0.0  # positives closer than this cost nothing (pytorch-metric-learning's pos_margin)


@dataclass
class TripletConfig:
    """Triplet loss (FaceNet) on L2-normalised vectors, with negative mining."""

    name: str = "triplet"
    num_negatives: int = 128
    negative_scope: NegativeScope = NegativeScope.batch
    margin: float = 0.2  # alpha, on squared distances (FaceNet's value)
    mining: Mining = Mining.semi_hard


@dataclass
class BinaryConfig:
    """Binary logistic loss (wav2vec 1.0): the positive against each negative, sigmoid cross-entropy."""

    name: str = "binary"
    num_negatives: int = 128
    negative_scope: NegativeScope = NegativeScope.batch


@dataclass
class ModelConfig:
    # Typed at load time by the variant each ``name`` picks (see variant_schema).
    encoder: Any = field(default_factory=ConvEncoderConfig)
    context: Any = field(default_factory=RecurrentContextConfig)
    predictor: Any = field(default_factory=LinearPredictorConfig)
    loss: Any = field(default_factory=InfoNCEConfig)


@dataclass
class SpeechDataConfig:
    """Random windows of raw audio from a corpus folder or manifest (cpc.data.speech)."""

    name: str = "speech"
    root: str = "data/sample"  # folder (LibriSpeech layout or flat) or TSV manifest
    window: int = 20480  # samples per training example (paper: 20480 = 1.28 s)
    train_split: Optional[str] = None  # file of utterance ids; None = every file not held out
    valid_split: Optional[str] = None  # file of utterance ids held out for validation
    valid_fraction: float = 0.05  # used when valid_split is None: this share of files, chosen by seed
    same_speaker_batches: bool = False  # every batch from one speaker (the paper's ablation)
    num_workers: int = 2  # loader processes; threads decoding the corpus when it is held on the device
    loading: Loading = Loading.auto  # auto = device on CUDA when the corpus fits in half the free memory, else loader


@dataclass
class OptimConfig:
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: Schedule = Schedule.constant  # decay after warmup to min_lr_ratio * lr
    min_lr_ratio: float = 0.0
    grad_clip: float = 0.0  # max global gradient norm; 0 disables


# ----------------------------------------------------------------------------- augmentation
# Training-time waveform augmentation (cpc.augment; Kharitonov et al. 2020, arXiv 2007.00991).
# Each augmentation is applied to a window with its ``probability`` (0, the default, turns it
# off), with parameters drawn uniformly from its range; all off = recipes train as before.


class AugmentSide(str, Enum):
    past = "past"  # only the context network's input is augmented; targets and negatives are the clean window's (two encoder passes)
    both = "both"  # one augmented window feeds the context network, the targets and the negatives


@dataclass
class PitchShiftConfig:
    """Pitch shift that keeps the duration (a causal two-tap delay-line shifter)."""

    probability: float = 0.0
    max_semitones: float = 3.0  # shift drawn from [-max, +max] semitones
    grain_ms: float = 20.0  # the delay line's length: the largest delay the shifter adds (its mean: half of it)


@dataclass
class ReverbConfig:
    """Convolution with a synthetic room impulse response: the direct path at lag 0, then an exponentially decaying noise tail."""

    probability: float = 0.0
    min_rt60_s: float = 0.1  # time for the tail to decay by 60 dB
    max_rt60_s: float = 0.5  # also the impulse response's length
    min_direct_to_reverb_db: float = 0.0  # energy of the direct path over the tail's
    max_direct_to_reverb_db: float = 15.0


@dataclass
class BandRejectConfig:
    """A minimum-phase FIR filter that removes one frequency band."""

    probability: float = 0.0
    min_center_hz: float = 200.0  # band centre, drawn on a log scale
    max_center_hz: float = 6000.0
    min_width_octaves: float = 0.25
    max_width_octaves: float = 1.0
    depth_db: float = 40.0  # attenuation inside the band


@dataclass
class NoiseConfig:
    """Additive coloured Gaussian noise (power spectrum 1/f^color) at a signal-to-noise ratio."""

    probability: float = 0.0
    min_snr_db: float = 5.0
    max_snr_db: float = 30.0
    max_color: float = 2.0  # exponent drawn from [0, max]: 0 white, 1 pink, 2 brown


@dataclass
class AugmentConfig:
    """Which augmentations, in the fixed order pitch -> reverb -> band_reject -> noise, and which side sees them."""

    side: AugmentSide = AugmentSide.past
    # How many training steps at the start see clean windows (0: augment from the first step).
    # Augmenting from the first step can keep a small model at chance; starting once it has left
    # that plateau avoids it (docs/results.md, "When the loss stays at chance").
    start_step: int = 0
    pitch: PitchShiftConfig = field(default_factory=PitchShiftConfig)
    reverb: ReverbConfig = field(default_factory=ReverbConfig)
    band_reject: BandRejectConfig = field(default_factory=BandRejectConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)


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
    init_from: Optional[str] = None
    device: Device = Device.auto
    precision: Precision = Precision.auto
    threads: int = 0  # torch intra-op threads on CPU; 0 leaves torch's default
    compile: bool = False  # torch.compile the encoder (measure first: cpc bench train --compile)
    tf32: bool = True  # on CUDA, TF32 for the float32 matmuls and convolutions left under autocast
    channels_last: bool = False  # the conv encoder as 2-D convolutions in channels-last memory (faster with cuDNN)
    logger: Logger = Logger.none  # wandb honours WANDB_MODE=offline|disabled
    wandb_project: str = "cpc"
    progress: bool = True  # tqdm progress bar
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # speech only; off by default (cpc.augment)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: Any = field(default_factory=SpeechDataConfig)  # typed by data.name, like the model's parts
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _wrap(error: OmegaConfBaseException, where: str) -> ConfigError:
    key = getattr(error, "full_key", None) or getattr(error, "key", None)
    message = (getattr(error, "msg", None) or str(error)).splitlines()[0]
    return ConfigError(f"{where}: bad config key {key!r}: {message}" if key else f"{where}: {message}")


def _variant_name(raw: DictConfig, section: str, registry: dict, where: str) -> str:
    """The variant a section asks for (``name``, or the schema default) and check it is registered."""
    from cpc.registry import DEFAULT_NAMES

    name = OmegaConf.select(raw, f"{section}.name", default=None)
    name = DEFAULT_NAMES[section] if name is None else name
    if name not in registry:
        raise ConfigError(f"{where}: bad config key '{section}.name': {name!r} is not one of {sorted(registry)}")
    return name


def variant_schema(raw: DictConfig | dict, where: str = "config", *, layers: list[tuple[str, DictConfig]] = ()) -> DictConfig:
    """The typed schema for a config: :class:`Config` with each variant section (``model.encoder``,
    ``model.context``, ``model.predictor``, ``model.loss``, ``data``) typed by the config class
    of the variant its ``name`` picks. ``raw`` is the untyped recipe + overrides; ``layers``,
    the (source, values) it was merged from, lets an unknown name be reported where it was set."""
    from cpc.registry import SECTIONS  # imported here: the registered modules import this one

    raw = OmegaConf.create(raw) if isinstance(raw, dict) else raw
    schema = OmegaConf.structured(Config)
    for section, registry in SECTIONS.items():
        setters = [source for source, layer in layers if OmegaConf.select(layer, f"{section}.name", default=None) is not None]
        name = _variant_name(raw, section, registry, setters[-1] if setters else where)
        parent, key = section.rsplit(".", 1) if "." in section else ("", section)
        node = OmegaConf.select(schema, parent) if parent else schema
        node[key] = OmegaConf.structured(registry[name].config)
    return schema


# Lower bounds the types cannot express; keys a variant does not have are skipped.
MINIMUMS = {
    "train.seed": 0, "train.max_steps": 1, "train.batch_size": 1, "train.log_every": 1, "train.valid_every": 1,
    "train.checkpoint_every": 1, "train.valid_batches": 0, "train.keep_checkpoints": 0, "train.threads": 0,
    "data.num_workers": 0, "data.window": 1, "model.loss.num_negatives": 1, "model.predictor.prediction_steps": 1,
    "model.predictor.first_offset": 1, "model.context.hidden_size": 1, "model.context.num_layers": 1, "optim.warmup_steps": 0,
    "data.patch_size": 1, "data.patch_stride": 1, "data.padded_size": 1,
}


def _check(config: DictConfig, where: str) -> DictConfig:
    for key, minimum in MINIMUMS.items():
        value = OmegaConf.select(config, key, default=None)
        if value is not None and value < minimum:
            raise ConfigError(f"{where}: bad config key {key!r}: {value} is below the minimum {minimum}")
    patch = [OmegaConf.select(config, f"data.{key}", default=None) for key in ("padded_size", "patch_size", "patch_stride")]
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
        raise ConfigError(f"{path}: the recipe is empty; give at least one section (e.g. copy recipes/speech/tiny.yaml)")
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of sections (model:, data:, train:, ...), this file's top level is a {type(content).__name__}")
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
    from cpc.registry import DEFAULT_NAMES, SECTIONS

    for section, default in DEFAULT_NAMES.items():
        current = default
        for index, (_, layer) in enumerate(layers):
            name = OmegaConf.select(layer, f"{section}.name", default=None)
            registry = SECTIONS[section]
            if name is None or name == current or (name in registry and current in registry and registry[name].config is registry[current].config):
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
            return "[" + ", ".join("(" + ", ".join(str(v) for v in dataclasses.astuple(item)) + ")" for item in value) + "]"
        return str(getattr(value, "value", value))

    lines = []

    from cpc.registry import SECTIONS

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
    return "\n".join(lines)
