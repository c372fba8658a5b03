"""Training-time waveform augmentation: pitch shift, reverberation, band reject, additive noise.

Kharitonov et al. 2020 ("Data Augmenting Contrastive Learning of Speech Representations in
the Time Domain", arXiv 2007.00991) improve CPC's ABX error by augmenting training windows in
the time domain, either only the "past" (the input of the context network) or both sides.
This module does the same on batches of waveforms (B, S), on the training device, with every
random draw taken from the step's explicit ``torch.Generator``:

    augment = build_augmentation(config.train.augment)     # None when every probability is 0
    augmented = augment(waveforms, lengths, generator)     # (B, S) float -> (B, S)

``train.augment.side`` says where the model (cpc.model.CPC.forward) uses it, in training mode
only (validation, features, streaming and export see clean audio):

* ``past``: the context network reads the encoded augmented window, while the prediction
  targets and the negatives are the latents of the clean window: two encoder passes. The
  model must predict clean speech from a corrupted past, as in the paper's "past" setting.
* ``both``: one augmented window is encoded once and feeds everything.

Each augmentation is applied to a window with its ``probability``, in the fixed order
pitch -> reverb -> band_reject -> noise (noise last, so its SNR is the one asked for).

Own torch code, not a library, because:
* torch-audiomentations imports torchaudio, which raises at import with some torch builds
  here (cpc/speech/optional_torchaudio.py); audiomentations works on one numpy example at a time on the CPU,
  which would move every batch off the training device; WavAugment (CPC_audio's) needs sox.
  Any of them would also be a new pinned dependency.
* None offers what this use needs: draws from an explicit ``torch.Generator`` (so a step's
  augmentation is a function of (seed, rank, step) and ``--resume`` equals the uninterrupted
  run: the training loop already hands the model such a generator for its negatives), and
  effects that are causal and keep the window aligned with its clean version (side=past
  compares the two frame by frame).
The four effects are ~150 lines of FFT convolutions and gathers, cheap next to a CPC step.

Cost: the effects are cheap; side=past pays for its second encoder pass (forward and
backward), side=both costs about what no augmentation does (benchmarks/README.md).

Causality and alignment. Sample t of an augmented window depends only on samples <= t of the
clean window (and on the random draws), so the context network cannot see the future through
the augmentation; only additive noise's level is set by one number per window (the window's
power), as SNRs are defined. Training-only, so the model's own causality
(tests/test_causality.py) does not involve this module; tests/test_augment.py checks it here.
* pitch: resampling (speed perturbation) changes the duration, so output time t reads input
  time t * ratio: ahead of t when the pitch goes up, a leak of up to (ratio - 1) * t samples
  and a growing misalignment with the clean targets. A phase vocoder keeps the duration but
  its STFT frames look ahead by about half a window. We use the classic delay-line shifter
  instead: two taps read the input at a delay that sweeps through [0, grain) at rate
  (1 - ratio) per sample (so each tap reads at speed ``ratio``: the pitch is multiplied by
  ``ratio``, the duration kept), crossfaded with sin^2 weights that are 0 where a tap's
  delay jumps. Every read is at or before t: causal; the price is a delay of grain/2 on
  average (10 ms, one frame, with the default 20 ms grain) and some comb-filter colouring.
* reverb: a synthetic room impulse response with the direct path at lag 0 (no delay) and an
  exponentially decaying Gaussian tail after it, applied as a causal FIR filter.
* band reject: a minimum-phase FIR filter built from the wanted magnitude response by the
  cepstrum (homomorphic) method: causal, and with the least delay any causal filter with that
  magnitude has. An IIR notch applied forward would also be causal but needs a sample loop.
* noise: Gaussian noise shaped to a 1/f^color power spectrum; independent of the signal.
"""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from cpc.errors import ConfigError
from cpc.runtime import plain
from cpc.speech.audio import SAMPLE_RATE
from cpc.speech.config import AugmentConfig, BandRejectConfig, NoiseConfig, PitchShiftConfig, ReverbConfig

__all__ = [
    "Augmentation",
    "PitchShift",
    "Reverb",
    "BandReject",
    "AdditiveNoise",
    "build_augmentation",
    "pitch_shift",
    "room_impulse_responses",
    "band_reject_filters",
    "causal_convolve",
    "add_noise",
]

BAND_REJECT_TAPS = 2048  # 128 ms at 16 kHz: resolves a quarter octave at 200 Hz
CEPSTRUM_SIZE = (
    4 * BAND_REJECT_TAPS
)  # the minimum-phase design on a finer grid than the taps kept, against cepstral aliasing
BAND_EDGE_OCTAVES = 0.05  # raised-cosine transition at each band edge (a hard edge rings through the whole filter)


# ----------------------------------------------------------------------------- the effects, as pure functions


def _check_waveforms(waveforms: Tensor) -> None:
    if waveforms.dim() != 2:
        raise ValueError(f"expected waveforms (B, S), got shape {tuple(waveforms.shape)}")


def causal_convolve(waveforms: Tensor, kernels: Tensor) -> Tensor:
    """y[b, t] = sum_{j <= t} kernels[b, j] * waveforms[b, t - j]: waveforms (B, S), kernels (B, L) -> (B, S).

    By FFT, zero-padded so nothing wraps around: causal up to float round-off."""
    _check_waveforms(waveforms)
    num_samples = waveforms.shape[1]
    size = (
        1 << (num_samples + kernels.shape[1] - 2).bit_length()
    )  # >= S + L - 1; a power of 2 (a large prime factor is slow)
    spectrum = torch.fft.rfft(waveforms, n=size) * torch.fft.rfft(kernels, n=size)  # (B, F)
    return torch.fft.irfft(spectrum, n=size)[:, :num_samples]  # (B, S)


def pitch_shift(waveforms: Tensor, ratios: Tensor, *, grain: int) -> Tensor:
    """Multiply the pitch by ``ratios`` (B,) keeping the duration: waveforms (B, S) -> (B, S).

    Two taps read at a delay d(t) in [0, grain) samples that changes by (1 - ratio) per
    sample, so the read position t - d(t) advances by ``ratio`` per sample; when d wraps
    around, the tap's sin^2 weight is 0, and the other tap (half a grain apart) carries the
    signal. Reads never pass t (causal); samples before the window's start read as 0.
    """
    _check_waveforms(waveforms)
    batch, num_samples = waveforms.shape
    time = torch.arange(num_samples, device=waveforms.device, dtype=waveforms.dtype)  # (S,)
    phase = time * ((1 - ratios)[:, None] / grain)  # (B, S): the delay in grains, before wrapping
    padded = torch.cat([waveforms.new_zeros(batch, 1), waveforms], dim=1)  # (B, 1 + S): index 0 stands for any t < 0
    output = torch.zeros_like(waveforms)
    for offset in (0.0, 0.5):
        fraction = torch.remainder(phase + offset, 1.0)  # (B, S) in [0, 1)
        position = time - grain * fraction  # (B, S), <= t
        left = torch.floor(position)
        right = torch.minimum(left + 1, time)  # == t only when the delay is 0, and then its weight is 0
        weight = position - left  # linear interpolation between left and right
        read = lambda index: padded.gather(1, (index.long() + 1).clamp(min=0))  # (B, S); -1 and below read the zero
        output += torch.sin(math.pi * fraction) ** 2 * ((1 - weight) * read(left) + weight * read(right))
    return output


def room_impulse_responses(
    rt60_s: Tensor, direct_to_reverb_db: Tensor, *, length: int, sample_rate: int, generator: torch.Generator
) -> Tensor:
    """Synthetic room impulse responses (B, length) for rt60_s, direct_to_reverb_db (B,).

    h[0] is the direct path; h[j >= 1] is Gaussian noise decaying by 60 dB in rt60 seconds,
    scaled so that the tail's energy is the direct path's over 10^(DRR/10). Each response
    has unit energy, so the output keeps the input's level (for white input)."""
    batch = rt60_s.shape[0]
    lag = torch.arange(1, length, device=rt60_s.device, dtype=rt60_s.dtype)  # (L - 1,)
    envelope = torch.exp(
        -3 * math.log(10) * lag / (rt60_s[:, None] * sample_rate)
    )  # (B, L - 1): amplitude 10^-3 at rt60
    tail = torch.randn(batch, length - 1, generator=generator, device=rt60_s.device, dtype=rt60_s.dtype) * envelope
    tail_energy = torch.sum(tail**2, dim=1, keepdim=True).clamp_min(1e-12)  # (B, 1)
    tail = tail * torch.sqrt(10 ** (-direct_to_reverb_db[:, None] / 10) / tail_energy)
    responses = torch.cat([torch.ones_like(tail[:, :1]), tail], dim=1)  # (B, L)
    return responses / torch.linalg.vector_norm(responses, dim=1, keepdim=True)


def band_reject_filters(
    low_hz: Tensor, high_hz: Tensor, *, depth_db: float, taps: int = BAND_REJECT_TAPS, sample_rate: int
) -> Tensor:
    """Minimum-phase FIR filters (B, taps) that attenuate [low_hz, high_hz] (B,) by depth_db.

    The magnitude: 0 dB outside the band, -depth_db inside, raised-cosine edges of
    BAND_EDGE_OCTAVES. Its minimum-phase version by the cepstrum: fold the real cepstrum of
    log|H| onto positive quefrencies and exponentiate (Oppenheim & Schafer, ch. 13)."""
    size = max(CEPSTRUM_SIZE, 4 * taps)
    frequency = torch.fft.rfftfreq(size, d=1 / sample_rate, device=low_hz.device).to(low_hz.dtype)  # (F,)
    octaves = torch.log2(frequency.clamp_min(1.0))[None, :]  # (1, F)
    # Distance into the band in octaves from the nearer edge (negative outside), then a soft step.
    inside = torch.minimum(octaves - torch.log2(low_hz)[:, None], torch.log2(high_hz)[:, None] - octaves)  # (B, F)
    step = 0.5 + 0.5 * torch.sin(math.pi * (inside / BAND_EDGE_OCTAVES).clamp(-0.5, 0.5))  # (B, F) in [0, 1]
    log_magnitude = -depth_db / 20 * math.log(10) * step  # (B, F): natural log of |H|
    cepstrum = torch.fft.irfft(log_magnitude, n=size)  # (B, size), real and even
    fold = torch.zeros(size, device=low_hz.device, dtype=low_hz.dtype)
    fold[0], fold[1 : size // 2], fold[size // 2] = 1, 2, 1
    minimum_phase = torch.exp(torch.fft.rfft(cepstrum * fold, n=size))  # (B, F) complex
    return torch.fft.irfft(minimum_phase, n=size)[:, :taps]  # (B, taps): causal, energy at the start


def add_noise(
    waveforms: Tensor, snr_db: Tensor, color: Tensor, *, lengths: Tensor | None = None, generator: torch.Generator
) -> Tensor:
    """waveforms (B, S) plus Gaussian noise with power spectrum 1/f^color (B,) at snr_db (B,),
    the ratio of the waveform's mean power over its first ``lengths`` samples to the noise's."""
    _check_waveforms(waveforms)
    batch, num_samples = waveforms.shape
    white = torch.randn(batch, num_samples, generator=generator, device=waveforms.device, dtype=waveforms.dtype)
    frequency = torch.fft.rfftfreq(num_samples, device=waveforms.device).to(waveforms.dtype)  # (F,), cycles per sample
    shape = torch.where(frequency > 0, frequency, 1.0)[None, :] ** (-color[:, None] / 2) * (
        frequency > 0
    )  # (B, F): amplitude, no DC
    noise = torch.fft.irfft(torch.fft.rfft(white) * shape, n=num_samples)  # (B, S)
    valid = _valid(waveforms, lengths)
    count = valid.sum(dim=1).clamp_min(1)  # (B,)
    signal_power = (waveforms**2 * valid).sum(dim=1) / count
    noise_power = (noise**2 * valid).sum(dim=1).clamp_min(1e-20) / count
    gain = torch.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))  # (B,)
    return waveforms + gain[:, None] * noise


def _valid(waveforms: Tensor, lengths: Tensor | None) -> Tensor:
    """(B, S) float mask: 1 for the first lengths[b] samples (all when lengths is None)."""
    if lengths is None:
        return torch.ones_like(waveforms)
    return (
        torch.arange(waveforms.shape[1], device=waveforms.device)[None, :] < lengths.to(waveforms.device)[:, None]
    ).to(waveforms.dtype)


# ----------------------------------------------------------------------------- random draws, one module each


def _uniform(low: float, high: float, batch: int, generator: torch.Generator, device: torch.device) -> Tensor:
    return low + (high - low) * torch.rand(batch, generator=generator, device=device)


class PitchShift(nn.Module):
    def __init__(self, config: PitchShiftConfig, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__()
        self.probability, self.max_semitones = config.probability, config.max_semitones
        self.grain = max(2, round(config.grain_ms * sample_rate / 1000))

    def forward(self, waveforms: Tensor, lengths: Tensor | None, generator: torch.Generator) -> Tensor:
        semitones = _uniform(-self.max_semitones, self.max_semitones, waveforms.shape[0], generator, waveforms.device)
        return pitch_shift(waveforms, 2 ** (semitones / 12), grain=self.grain)


class Reverb(nn.Module):
    def __init__(self, config: ReverbConfig, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__()
        self.config, self.sample_rate = config, sample_rate
        self.length = max(2, round(config.max_rt60_s * sample_rate))

    def forward(self, waveforms: Tensor, lengths: Tensor | None, generator: torch.Generator) -> Tensor:
        batch, device, config = waveforms.shape[0], waveforms.device, self.config
        rt60 = _uniform(config.min_rt60_s, config.max_rt60_s, batch, generator, device)
        direct_to_reverb = _uniform(
            config.min_direct_to_reverb_db, config.max_direct_to_reverb_db, batch, generator, device
        )
        responses = room_impulse_responses(
            rt60, direct_to_reverb, length=self.length, sample_rate=self.sample_rate, generator=generator
        )
        return causal_convolve(waveforms, responses)


class BandReject(nn.Module):
    def __init__(self, config: BandRejectConfig, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__()
        self.config, self.sample_rate = config, sample_rate

    def forward(self, waveforms: Tensor, lengths: Tensor | None, generator: torch.Generator) -> Tensor:
        batch, device, config = waveforms.shape[0], waveforms.device, self.config
        center = 2 ** _uniform(
            math.log2(config.min_center_hz), math.log2(config.max_center_hz), batch, generator, device
        )  # (B,) Hz
        width = _uniform(config.min_width_octaves, config.max_width_octaves, batch, generator, device)  # (B,) octaves
        filters = band_reject_filters(
            center * 2 ** (-width / 2),
            center * 2 ** (width / 2),
            depth_db=config.depth_db,
            sample_rate=self.sample_rate,
        )
        return causal_convolve(waveforms, filters)


class AdditiveNoise(nn.Module):
    def __init__(self, config: NoiseConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, waveforms: Tensor, lengths: Tensor | None, generator: torch.Generator) -> Tensor:
        batch, device, config = waveforms.shape[0], waveforms.device, self.config
        snr = _uniform(config.min_snr_db, config.max_snr_db, batch, generator, device)
        color = _uniform(0.0, config.max_color, batch, generator, device)
        return add_noise(waveforms, snr, color, lengths=lengths, generator=generator)


# ----------------------------------------------------------------------------- the composition


class Augmentation(nn.Module):
    """The enabled effects in order, each applied to a window with its probability:
    ``augment(waveforms (B, S), lengths (B,) or None, generator)`` -> (B, S), zero past each length.

    ``side`` ("past" or "both") is read by cpc.model.CPC. No parameters or buffers: a model's
    state dict is the same with and without augmentation."""

    def __init__(self, effects: list[tuple[float, nn.Module]], *, side: str) -> None:
        super().__init__()
        self.probabilities = [probability for probability, _ in effects]
        self.effects = nn.ModuleList(effect for _, effect in effects)
        self.side = side

    def forward(self, waveforms: Tensor, lengths: Tensor | None, generator: torch.Generator) -> Tensor:
        _check_waveforms(waveforms)
        dtype = waveforms.dtype
        augmented = waveforms.float()  # the FFTs in float32, also under bf16 autocast
        valid = _valid(augmented, lengths)
        for probability, effect in zip(self.probabilities, self.effects):
            chosen = torch.rand(augmented.shape[0], generator=generator, device=augmented.device) < probability  # (B,)
            augmented = (
                torch.where(chosen[:, None], effect(augmented, lengths, generator), augmented) * valid
            )  # tails stay out of the padding
        return augmented.to(dtype)

    def extra_repr(self) -> str:
        return f"side={self.side}, probabilities={self.probabilities}"


def _check(config: AugmentConfig) -> None:
    """Ranges the schema's types cannot express; errors name the key."""
    problems = []
    for name in ("pitch", "reverb", "band_reject", "noise"):
        section = config[name]
        if not 0 <= section.probability <= 1:
            problems.append(f"train.augment.{name}.probability={section.probability} is not in [0, 1]")
        for low, high in (
            ("min_rt60_s", "max_rt60_s"),
            ("min_direct_to_reverb_db", "max_direct_to_reverb_db"),
            ("min_center_hz", "max_center_hz"),
            ("min_width_octaves", "max_width_octaves"),
            ("min_snr_db", "max_snr_db"),
        ):
            if low in section and section[low] > section[high]:
                problems.append(f"train.augment.{name}.{low}={section[low]} is above {high}={section[high]}")
    if config.pitch.max_semitones < 0 or config.pitch.grain_ms <= 0:
        problems.append("train.augment.pitch: max_semitones must be >= 0 and grain_ms > 0")
    if config.reverb.min_rt60_s <= 0:
        problems.append(f"train.augment.reverb.min_rt60_s={config.reverb.min_rt60_s} must be above 0")
    if config.band_reject.min_center_hz <= 0 or config.band_reject.max_center_hz >= SAMPLE_RATE / 2:
        problems.append(f"train.augment.band_reject: centres must lie in (0, {SAMPLE_RATE // 2}) Hz")
    if config.band_reject.min_width_octaves <= 0 or config.band_reject.depth_db < 0:
        problems.append("train.augment.band_reject: min_width_octaves must be above 0 and depth_db >= 0")
    if config.noise.max_color < 0:
        problems.append(f"train.augment.noise.max_color={config.noise.max_color} must be >= 0")
    if config.start_step < 0:
        problems.append(f"train.augment.start_step={config.start_step} must be >= 0")
    if problems:
        raise ConfigError("; ".join(problems))


def build_augmentation(config: AugmentConfig | DictConfig | dict | None) -> Augmentation | None:
    """The augmentation ``train.augment`` asks for, or None when every probability is 0 (the default)."""
    if config is None:
        return None
    config = OmegaConf.merge(OmegaConf.structured(AugmentConfig), config)
    _check(config)
    effects = [
        (config.pitch.probability, PitchShift(config.pitch)),
        (config.reverb.probability, Reverb(config.reverb)),
        (config.band_reject.probability, BandReject(config.band_reject)),
        (config.noise.probability, AdditiveNoise(config.noise)),
    ]
    effects = [(probability, effect) for probability, effect in effects if probability > 0]
    return Augmentation(effects, side=str(plain(config.side))) if effects else None
