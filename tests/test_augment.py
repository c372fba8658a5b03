"""Training-time augmentation (cpc.speech.augment): each effect does what it says, causally and
reproducibly; side=past feeds the criterion clean latents; training with it runs, resumes
exactly, and leaves validation and features un-augmented."""

import json
import math
import shutil

import pytest
import torch
from conftest import small_config

from cpc.checkpoint import load_checkpoint
from cpc.config import ConfigError, load_config
from cpc.model import build_model
from cpc.speech.augment import (
    add_noise,
    band_reject_filters,
    build_augmentation,
    causal_convolve,
    pitch_shift,
    room_impulse_responses,
)
from cpc.train import train

SAMPLE_RATE = 16000
EFFECTS = ("pitch", "reverb", "band_reject", "noise")
time = torch.arange(SAMPLE_RATE, dtype=torch.float64) / SAMPLE_RATE  # 1 s


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sine(hz: float) -> torch.Tensor:
    return torch.sin(2 * math.pi * hz * time).float()[None]  # (1, S)


def power_db(waveform: torch.Tensor) -> float:
    return 10 * math.log10(waveform.double().pow(2).mean().item())


def only(effect: str, side: str = "past", **settings) -> list[str]:
    """Overrides that turn one effect on for every window."""
    settings = {"probability": 1.0, **settings}
    return [f"train.augment.side={side}"] + [f"train.augment.{effect}.{key}={value}" for key, value in settings.items()]


def every_effect(side: str) -> list[str]:
    return [f"train.augment.side={side}"] + [f"train.augment.{effect}.probability=1.0" for effect in EFFECTS]


# ----------------------------------------------------------------------------- each effect


@pytest.mark.parametrize("semitones", [-3, -1, 2, 3])
def test_pitch_shift_multiplies_the_pitch_and_keeps_the_duration(semitones):
    ratio = 2 ** (semitones / 12)
    # A harmonic complex (a voice-like pitch of 117 Hz): the autocorrelation's peak is its period.
    voice = sum(torch.sin(2 * math.pi * 117 * harmonic * time) / harmonic for harmonic in range(1, 8)).float()[None]
    shifted = pitch_shift(voice, torch.tensor([ratio]), grain=320)
    assert shifted.shape == voice.shape
    steady = shifted[0, 400:]
    autocorrelation = torch.fft.irfft(torch.fft.rfft(steady, n=2 * len(steady)).abs() ** 2)[:400]
    shortest = SAMPLE_RATE // 400  # lags of pitches up to 400 Hz
    period = shortest + autocorrelation[shortest:].argmax().item()
    assert SAMPLE_RATE / period == pytest.approx(117 * ratio, rel=0.01)
    # A sine whose phase is continuous across the delay line's jumps (500 Hz x 320 samples is 10
    # cycles) comes out as a pure sine at ratio x 500 Hz.
    spectrum = torch.fft.rfft(
        pitch_shift(sine(500), torch.tensor([ratio]), grain=320)[0] * torch.hann_window(SAMPLE_RATE)
    ).abs()
    assert spectrum.argmax().item() == round(500 * ratio)


def test_pitch_shift_by_one_is_a_delay_and_ratios_apply_per_window():
    waveforms = torch.randn(2, 4000, generator=generator())
    same = pitch_shift(waveforms, torch.tensor([1.0, 1.0]), grain=320)
    # Ratio 1: both taps hold their delays (0 and half a grain, weights 0 and 1).
    torch.testing.assert_close(same[:, 160:], waveforms[:, :-160])
    mixed = pitch_shift(waveforms, torch.tensor([1.0, 1.2]), grain=320)
    torch.testing.assert_close(mixed[0], same[0])
    torch.testing.assert_close(mixed[1], pitch_shift(waveforms[1:], torch.tensor([1.2]), grain=320)[0])


@pytest.mark.parametrize("low, high", [(800.0, 1600.0), (250.0, 350.0), (3000.0, 6000.0)])
def test_band_reject_removes_its_band_and_keeps_the_others(low, high):
    filters = band_reject_filters(torch.tensor([low]), torch.tensor([high]), depth_db=40.0, sample_rate=SAMPLE_RATE)
    center = math.sqrt(low * high)
    for hz, lowest, highest in [
        (center, -99, -30),
        (low * 1.1, -99, -30),
        (high / 1.1, -99, -30),
        (low / 1.6, -0.5, 0.5),
        (high * 1.6, -0.5, 0.5),
    ]:
        tone = sine(hz)
        out = causal_convolve(tone, filters)[:, 4096:]  # after the filter's start-up
        assert lowest <= power_db(out) - power_db(tone[:, 4096:]) <= highest, hz
    # Minimum phase: the filter's energy is at its start (little delay).
    assert filters[0, :64].pow(2).sum() > 0.95 * filters.pow(2).sum()


@pytest.mark.parametrize("snr_db, color", [(0.0, 0.0), (10.0, 1.0), (25.0, 2.0)])
def test_noise_is_added_at_the_requested_snr(snr_db, color):
    clean = 0.1 * torch.randn(3, 8000, generator=generator(1))
    lengths = torch.tensor([8000, 5000, 3000])
    noisy = add_noise(clean, torch.full((3,), snr_db), torch.full((3,), color), lengths=lengths, generator=generator())
    for b, length in enumerate(lengths.tolist()):
        assert power_db(clean[b, :length]) - power_db((noisy - clean)[b, :length]) == pytest.approx(snr_db, abs=1e-3)
    # The colour: brown noise has most of its power below 1 kHz, white noise a sixteenth of it.
    spectrum = torch.fft.rfft(noisy[0] - clean[0]).abs() ** 2
    below = spectrum[: len(spectrum) // 8].sum() / spectrum.sum()
    assert below == pytest.approx(1 / 8, abs=0.05) if color == 0 else below > 0.5


def test_reverb_keeps_the_direct_path_at_lag_zero_and_the_level():
    rt60, direct_to_reverb = torch.tensor([0.1, 0.5]), torch.tensor([0.0, 15.0])
    responses = room_impulse_responses(
        rt60, direct_to_reverb, length=8000, sample_rate=SAMPLE_RATE, generator=generator()
    )
    assert torch.equal(responses.abs().argmax(dim=1), torch.tensor([0, 0]))  # no delay
    torch.testing.assert_close(responses.pow(2).sum(dim=1), torch.ones(2))
    tail_db = 10 * torch.log10(responses[:, 0] ** 2 / responses[:, 1:].pow(2).sum(dim=1))
    torch.testing.assert_close(tail_db, torch.tensor([0.0, 15.0]), atol=1e-3, rtol=0)
    # The tail decays by 60 dB in RT60: the energy of its last tenth, relative to its first.
    early, late = responses[1, 1:801].pow(2).sum(), responses[1, 7200:].pow(2).sum()
    assert 10 * math.log10(late / early) < -40
    impulse = torch.zeros(1, 4000)
    impulse[0, 1000] = 1.0
    echoed = causal_convolve(impulse, responses[:1])
    assert echoed.abs().argmax().item() == 1000 and echoed[0, :1000].abs().max() < 1e-6


@pytest.mark.parametrize("effect", ["pitch up", "pitch down", "reverb", "band_reject"])
def test_linear_effects_never_read_ahead(effect):
    """Pitch shift, reverb and band reject are linear: applied to the unit impulses e_s (a batch
    of them) they give their whole response matrix, which must hold nothing at t < s."""
    size = 800
    impulses = torch.eye(size)  # (S, S): row s is e_s
    if effect.startswith("pitch"):
        ratio = 1.25 if effect == "pitch up" else 0.8
        responses = pitch_shift(impulses, torch.full((size,), ratio), grain=320)
    elif effect == "reverb":
        kernel = room_impulse_responses(
            torch.tensor([0.05]), torch.tensor([3.0]), length=1000, sample_rate=SAMPLE_RATE, generator=generator()
        )
        responses = causal_convolve(impulses, kernel.expand(size, -1))
    else:
        kernel = band_reject_filters(
            torch.tensor([300.0]), torch.tensor([500.0]), depth_db=40.0, sample_rate=SAMPLE_RATE
        )
        responses = causal_convolve(impulses, kernel.expand(size, -1))
    ahead = torch.tril(torch.ones(size, size, dtype=torch.bool), diagonal=-1)  # [s, t] with t < s
    assert responses[ahead].abs().max() < 1e-6
    assert responses[~ahead].abs().max() > 0.1


@pytest.mark.parametrize("effect", EFFECTS)
def test_every_effect_is_causal(effect):
    """Output samples before t do not change when inputs from t on do; noise's level is set by the
    window's power (one number), so its check holds that fixed by rescaling the changed part."""
    augment = build_augmentation(load_config(None, only(effect)).train.augment)
    waveforms = torch.randn(2, 6000, generator=generator(1))
    changed = waveforms.clone()
    changed[:, 3000:] = (
        torch.randn(2, 3000, generator=generator(2)) * waveforms[:, 3000:].norm(dim=1, keepdim=True) / math.sqrt(3000)
    )
    if effect == "noise":
        changed[:, 3000:] *= waveforms[:, 3000:].norm(dim=1, keepdim=True) / changed[:, 3000:].norm(dim=1, keepdim=True)
    before, after = augment(waveforms, None, generator(3)), augment(changed, None, generator(3))
    torch.testing.assert_close(after[:, :3000], before[:, :3000], atol=1e-5, rtol=0)
    assert not torch.allclose(after[:, 3000:], before[:, 3000:])


def test_augmentation_is_a_function_of_the_generator_and_respects_lengths():
    augment = build_augmentation(load_config(None, every_effect("both")).train.augment)
    waveforms = 0.1 * torch.randn(3, 8000, generator=generator())
    lengths = torch.tensor([8000, 6000, 100])
    first = augment(waveforms, lengths, generator(7))
    assert torch.equal(first, augment(waveforms, lengths, generator(7)))
    assert not torch.allclose(first, augment(waveforms, lengths, generator(8)))
    assert torch.all(first[1, 6000:] == 0) and torch.all(
        first[2, 100:] == 0
    )  # reverb tails and noise stay out of the padding
    assert torch.isfinite(first).all() and first.shape == waveforms.shape


def test_probability_picks_windows():
    half = build_augmentation(load_config(None, only("noise", probability=0.5)).train.augment)
    waveforms = torch.randn(64, 1000, generator=generator())
    out = half(waveforms, None, generator(1))
    untouched = (out == waveforms).all(dim=1)
    assert 16 < untouched.sum() < 48


def test_off_by_default_and_bad_settings_are_named():
    assert build_augmentation(load_config("speech/tiny").train.augment) is None
    assert build_model(load_config("speech/tiny")).augment is None
    with pytest.raises(ConfigError, match=r"train.augment.noise.probability=1.5 is not in \[0, 1\]"):
        build_augmentation(load_config(None, ["train.augment.noise.probability=1.5"]).train.augment)
    with pytest.raises(ConfigError, match="min_snr_db=40.0 is above max_snr_db=30.0"):
        build_augmentation(load_config(None, ["train.augment.noise.min_snr_db=40"]).train.augment)
    with pytest.raises(
        ConfigError, match=r"'train.augment.side': Invalid value 'future', expected one of \[past, both\]"
    ):
        load_config(None, ["train.augment.side=future"])
    with pytest.raises(ConfigError, match="works on speech waveforms"):
        build_model(load_config("image/fashion_mnist", only("noise")))
    with pytest.raises(ConfigError, match="train.augment.start_step=-1 must be >= 0"):
        build_augmentation(load_config(None, [*only("noise"), "train.augment.start_step=-1"]).train.augment)


# ----------------------------------------------------------------------------- in the model


class Spy(torch.nn.Module):
    """Wraps the criterion and keeps the latents it was given."""

    def __init__(self, criterion):
        super().__init__()
        self.criterion = criterion

    def forward(self, predictions, latents, lengths, generator, **kwargs):
        self.latents = latents
        return self.criterion(predictions, latents, lengths, generator, **kwargs)


@pytest.mark.parametrize("side", ["past", "both"])
def test_side_decides_which_latents_the_criterion_scores(corpus_dir, side):
    config = small_config(corpus_dir, **dict(setting.split("=") for setting in every_effect(side)))
    torch.manual_seed(0)
    model = build_model(config)
    model.criterion = spy = Spy(model.criterion)
    waveforms = 0.1 * torch.randn(2, 4096, generator=generator())
    out = model(waveforms, None, generator=generator(5))
    augmented = model.augment(waveforms, None, generator(5))  # the model's first draws from its generator
    with torch.no_grad():
        clean_latents, _ = model.encoder(waveforms)
        augmented_latents, _ = model.encoder(augmented)
    torch.testing.assert_close(spy.latents, clean_latents if side == "past" else augmented_latents)
    assert not torch.allclose(clean_latents, augmented_latents)
    assert torch.isfinite(out["loss"])
    # The context network read the augmented window in both cases: the same loss from a manual pass.
    # The negatives are drawn after the augmentation: the same generator state here.
    generator_after = generator(5)
    model.augment(waveforms, None, generator_after)
    with torch.no_grad():
        context, _ = model.context(augmented_latents)
        targets = clean_latents if side == "past" else augmented_latents
        lengths = torch.full((2,), targets.shape[1])
        manual = spy.criterion(
            model.predictors(context), targets, lengths, generator_after, offsets=model.predictors.offsets
        )
    torch.testing.assert_close(manual["loss"], out["loss"].detach())


def test_evaluation_mode_sees_clean_audio(corpus_dir):
    model = build_model(small_config(corpus_dir, **dict(setting.split("=") for setting in every_effect("both"))))
    plain = build_model(small_config(corpus_dir))
    plain.load_state_dict(model.state_dict(), strict=True)  # the augmentation adds no state
    model.eval(), plain.eval()
    waveforms = 0.1 * torch.randn(2, 4096, generator=generator())
    with torch.no_grad():
        torch.testing.assert_close(
            model(waveforms, generator=generator(1))["loss"], plain(waveforms, generator=generator(1))["loss"]
        )
        torch.testing.assert_close(model.extract_features(waveforms)[0], plain.extract_features(waveforms)[0])


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize(
    "overrides", [only(effect) for effect in EFFECTS] + [every_effect("both")], ids=[*EFFECTS, "all-both"]
)
@pytest.mark.slow
def test_training_with_augmentation_runs(corpus_dir, tmp_path, overrides):
    config = small_config(
        corpus_dir,
        **{"train.max_steps": 3, "train.valid_every": 3, **dict(setting.split("=") for setting in overrides)},
    )
    record = train(config, tmp_path / "run")
    assert record["step"] == 3 and math.isfinite(record["loss"])


@pytest.mark.slow
def test_augmentation_starts_at_its_step(corpus_dir, tmp_path):
    def first_record(run, **settings):
        train(small_config(corpus_dir, **settings), tmp_path / run)  # training records at steps 2, 4, 6
        return [
            json.loads(line)
            for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()
            if "split" not in json.loads(line)
        ]

    past = dict(setting.split("=") for setting in every_effect("past"))
    plain, late, early = (
        first_record("plain"),
        first_record("late", **past, **{"train.augment.start_step": 2}),
        first_record("early", **past),
    )
    assert (
        late[0]["loss"] == plain[0]["loss"] and late[0]["accuracy"] == plain[0]["accuracy"]
    )  # steps 1-2 clean: the same run
    assert early[0]["loss"] != plain[0]["loss"]
    assert late[1]["loss"] != plain[1]["loss"]  # steps 3-4 augmented


@pytest.mark.slow
def test_resume_with_augmentation_equals_uninterrupted(corpus_dir, tmp_path):
    # Augmentation starts after the resume point (step 3): the resumed run must count steps as the uninterrupted one.
    config = small_config(
        corpus_dir,
        **{
            "train.keep_checkpoints": 5,
            "train.augment.start_step": 4,
            **dict(setting.split("=") for setting in every_effect("past")),
        },
    )
    train(config, tmp_path / "full")
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "full" / "checkpoints" / "step_3.pt", resumed / "checkpoints" / "last.pt")
    train(config, resumed, resume=True)
    full, again = (
        load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt"),
        load_checkpoint(resumed / "checkpoints" / "last.pt"),
    )
    for name, tensor in full["model"].items():
        torch.testing.assert_close(again["model"][name], tensor, rtol=0, atol=0, msg=name)
    # Augmentation changes the run: a resume may not switch it on, off or to the other side.
    with pytest.raises(ConfigError, match="--resume cannot change train.augment.side"):
        train(
            small_config(corpus_dir, **{"train.max_steps": 8, **dict(s.split("=") for s in every_effect("both"))}),
            resumed,
            resume=True,
        )
    # And it changes what is learned: the same run without it ends elsewhere.
    train(small_config(corpus_dir, **{"train.keep_checkpoints": 5}), tmp_path / "plain")
    plain = load_checkpoint(tmp_path / "plain" / "checkpoints" / "last.pt")
    assert any(not torch.equal(plain["model"][name], tensor) for name, tensor in full["model"].items())
