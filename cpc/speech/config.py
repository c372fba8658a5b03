"""Speech configuration: the raw-audio encoder, the speech data source and training-time
waveform augmentation. Each class types a section of a recipe; :mod:`cpc.speech` registers them
(``model.encoder.name: conv``, ``data.name: speech``, ``train.augment``).

The defaults are the paper's (van den Oord et al. 2018, section 3.1): a 5-layer strided
convolutional encoder with 512 channels (downsampling 160 = 10 ms at 16 kHz) and windows of
20480 samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Norm(str, Enum):
    none = "none"
    batch = "batch"  # batch statistics: not causal in training mode, and they see the padding
    channel = "channel"  # layer norm over channels, per frame: causal
    channel_unbiased = "channel_unbiased"  # the same with the unbiased variance (CPC_audio's ChannelNorm)
    instance = "instance"  # per channel over the whole sequence (CPC_audio's instanceNorm): not causal


class Loading(str, Enum):
    auto = "auto"  # device when training on CUDA and the corpus fits, else loader
    device = "device"  # the corpus on the training device as int16, windows cut there (cpc.speech.resident)
    loader = "loader"  # DataLoader workers read each window from its file (cpc.speech.windows)


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


@dataclass
class ConvEncoderConfig:
    """The raw-audio encoder: strided Conv1d layers (cpc.speech.encoder.ConvEncoder)."""

    name: str = "conv"
    layers: list[ConvLayer] = field(default_factory=paper_encoder_layers)
    norm: Norm = Norm.none


@dataclass
class SpeechDataConfig:
    """Random windows of raw audio from a corpus folder or manifest (cpc.speech.windows)."""

    name: str = "speech"
    root: str = "data/sample"  # folder (LibriSpeech layout or flat) or TSV manifest
    window: int = 20480  # samples per training example (paper: 20480 = 1.28 s)
    train_split: str | None = None  # file of utterance ids; None = every file not held out
    valid_split: str | None = None  # file of utterance ids held out for validation
    valid_fraction: float = 0.05  # used when valid_split is None: this share of files, chosen by seed
    same_speaker_batches: bool = False  # every batch from one speaker (the paper's ablation)
    num_workers: int = 2  # loader processes; threads decoding the corpus when it is held on the device
    loading: Loading = Loading.auto  # auto = device on CUDA when the corpus fits in half the free memory, else loader


# ----------------------------------------------------------------------------- augmentation (train.augment)
# Training-time waveform augmentation (cpc.speech.augment; Kharitonov et al. 2020, arXiv 2007.00991).
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
