"""GPU-scale training, checked on the CPU: blocked scoring, shared negatives, the corpus held on
the device, one-process torchrun, and the training benchmark's batch sizes, profile and MFU.

Shape legend: B batch, T frames, K offsets ahead, C channels, N negatives, M = 1 + N candidates,
R = B*T*K rows of predictions.
"""

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SAMPLE_RATE, small_config
from omegaconf import OmegaConf

import cpc.infonce
from cpc.checkpoint import load_checkpoint
from cpc.config import ConfigError, load_config
from cpc.infonce import sample_candidates, score_candidates, score_shared
from cpc.negatives import positive_indices, sample_negatives, sample_shared_negatives
from cpc.speech.resident import ResidentSpeechData, build_speech_data
from cpc.speech.windows import SpeechData, split_corpus
from cpc.train import train

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"  # the committed sample corpus: 6 speakers, 88 16-bit FLAC files


def read_metrics(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def tiny_config(*overrides, root=SAMPLE):
    """speech/tiny at test size: 4 windows of 4096 samples (25 frames) a step, a few steps."""
    settings = [
        f"data.root={root}",
        "data.window=4096",
        "data.num_workers=0",
        "train.batch_size=4",
        "train.max_steps=4",
        "train.log_every=1",
        "train.valid_every=2",
        "train.valid_batches=1",
        "train.checkpoint_every=2",
        "train.keep_checkpoints=5",
        "train.progress=false",
        "train.threads=1",
    ]
    return load_config("speech/tiny", settings + list(overrides))


# ----------------------------------------------------------------------------- blocked scoring


def scoring_inputs(seed=0, batch_size=3, num_frames=20, steps=3, channels=5, num_candidates=6):
    """float64 predictions (B, T, K, C), latents (B, T, C) and candidates (B, T, K, M) in which
    some rows draw a column twice or more."""
    generator = torch.Generator().manual_seed(seed)
    predictions = torch.randn(batch_size, num_frames, steps, channels, generator=generator, dtype=torch.float64)
    latents = torch.randn(batch_size, num_frames, channels, generator=generator, dtype=torch.float64)
    candidates = torch.randint(
        0, batch_size * num_frames, (batch_size, num_frames, steps, num_candidates), generator=generator
    )
    candidates[:, ::2, :, 2] = candidates[:, ::2, :, 1]  # a frame drawn twice in half the rows
    candidates[0, 0, 0] = 7  # one row that is the same column M times
    return predictions.requires_grad_(), latents.requires_grad_(), candidates


def plain_scores(predictions, latents, candidates):
    """The reference: every score by one autograd matmul, then torch.gather (memory quadratic in B)."""
    channels = latents.shape[-1]
    every = predictions.reshape(-1, channels) @ latents.reshape(-1, channels).T  # (R, B*T)
    return every.gather(1, candidates.reshape(-1, candidates.shape[-1])).view(candidates.shape)


def scores_and_gradients(score, predictions, latents, candidates, weights):
    predictions.grad = latents.grad = None
    scores = score(predictions, latents, candidates)
    (scores * weights).sum().backward()
    return scores.detach(), predictions.grad.clone(), latents.grad.clone()


@pytest.mark.parametrize(
    "block_elements",
    [1, 7 * 60, 60 * 60 - 1],
    ids=["one-row-blocks", "7-rows-and-a-partial-5", "59-rows-and-a-partial-3"],
)
def test_blocked_scores_equal_unblocked_and_plain_autograd(block_elements):
    """R = 3*20*3 = 180 rows against B*T = 60 latents: 180 blocks, 26 (the last of 5 rows) or 4 (the last of 3 rows)."""
    predictions, latents, candidates = scoring_inputs()
    weights = torch.randn(candidates.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    blocked = scores_and_gradients(
        lambda *a: score_candidates(*a, block_elements=block_elements), predictions, latents, candidates, weights
    )
    whole = scores_and_gradients(
        lambda *a: score_candidates(*a, block_elements=2**40), predictions, latents, candidates, weights
    )
    plain = scores_and_gradients(plain_scores, predictions, latents, candidates, weights)
    for name, one, other, reference in zip(["scores", "d predictions", "d latents"], blocked, whole, plain):
        torch.testing.assert_close(one, reference, rtol=1e-12, atol=1e-12, msg=f"blocked {name}")
        torch.testing.assert_close(other, reference, rtol=1e-12, atol=1e-12, msg=f"unblocked {name}")
    # A column drawn M times gets all M gradients: row (0, 0, 0) scores latent 7 six times.
    torch.testing.assert_close(
        blocked[1][0, 0, 0], weights[0, 0, 0].sum() * latents.detach().reshape(-1, 5)[7], rtol=1e-12, atol=1e-12
    )


def test_blocked_scores_gradient_of_a_plain_sum_and_of_one_input_only():
    """loss = scores.sum() hands the backward an expanded (stride 0) gradient; and only the
    input that asks for a gradient gets one."""
    predictions, latents, candidates = scoring_inputs(seed=2)
    plain_scores(predictions, latents, candidates).sum().backward()
    expected = (predictions.grad.clone(), latents.grad.clone())
    predictions.grad = latents.grad = None
    score_candidates(predictions, latents, candidates, block_elements=100).sum().backward()
    torch.testing.assert_close((predictions.grad, latents.grad), expected, rtol=1e-12, atol=1e-12)
    predictions.grad = None
    score_candidates(predictions, latents.detach(), candidates, block_elements=100).sum().backward()
    torch.testing.assert_close(predictions.grad, expected[0], rtol=1e-12, atol=1e-12)
    latents.grad = None
    score_candidates(predictions.detach(), latents, candidates, block_elements=100).sum().backward()
    torch.testing.assert_close(latents.grad, expected[1], rtol=1e-12, atol=1e-12)


def test_scores_of_an_empty_batch_are_empty():
    predictions, latents, candidates = (
        torch.zeros(2, 0, 4, 8),
        torch.zeros(2, 0, 8),
        torch.zeros(2, 0, 4, 9, dtype=torch.long),
    )
    assert score_candidates(predictions, latents, candidates).shape == (2, 0, 4, 9)


def saved_tensor_sizes(function, *inputs):
    """numel of every tensor autograd keeps for the backward of ``function(*inputs)``."""
    sizes = []

    def pack(tensor):
        sizes.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        function(*inputs)
    return sizes


def test_score_candidates_saves_nothing_quadratic_in_the_batch():
    """The custom Function keeps its inputs, never a (rows, B*T) block; plain autograd keeps the
    whole (R, B*T) score matrix (the control: the check can see it)."""
    predictions, latents, candidates = scoring_inputs(
        batch_size=4, num_frames=30, steps=3, channels=5, num_candidates=4
    )
    rows, frames = 4 * 30 * 3, 4 * 30  # R = 360 rows, B*T = 120 latents; C = 5 and M = 4 are far below B*T
    quadratic = rows * frames
    for block_elements in (2**40, 10 * frames):
        sizes = saved_tensor_sizes(
            lambda *a, block_elements=block_elements: score_candidates(*a, block_elements=block_elements),
            predictions,
            latents,
            candidates,
        )
        assert sizes and max(sizes) <= rows * 5, f"block_elements={block_elements}: saved {sorted(sizes)}"
    assert max(saved_tensor_sizes(plain_scores, predictions, latents, candidates)) >= quadratic
    # The shared pool's scores are linear as well: (R, N + 1) at most.
    lengths = torch.tensor([30, 20, 30, 25])
    shared = sample_shared_negatives(lengths, 30, 3, 3, generator=torch.Generator().manual_seed(0))
    positives, _ = positive_indices(lengths, 30, 3)
    shared_candidates = torch.cat([positives[..., None], shared.pool[shared.keep]], -1)
    sizes = saved_tensor_sizes(lambda p, z: score_shared(p, z, shared_candidates, shared), predictions, latents)
    assert max(sizes) <= rows * 5, sorted(sizes)


# ----------------------------------------------------------------------------- batch_shared negatives


@pytest.mark.parametrize("stride", [1, 3])
def test_shared_negatives_are_distinct_valid_never_positive_and_from_the_pool(stride):
    """stride 3: a grid of 3 columns (offset k = 3k flat positions), lengths in whole rows."""
    num_frames, steps, num_negatives = 12 * stride, 4, 16
    lengths = torch.tensor([12, 7, 3, 10]) * stride
    shared = sample_shared_negatives(
        lengths, num_frames, steps, num_negatives, stride=stride, generator=torch.Generator().manual_seed(1)
    )
    pool, negatives = shared.pool, shared.pool[shared.keep]
    assert pool.shape == (num_negatives + 1,) and negatives.shape == (4, num_frames, steps, num_negatives)
    sequence, frame = pool // num_frames, pool % num_frames
    assert len(set(pool.tolist())) == num_negatives + 1, "the pool repeats a frame"
    assert (frame < lengths[sequence]).all(), "the pool holds a padded frame"
    positives, valid = positive_indices(lengths, num_frames, steps, stride=stride)
    assert valid.any() and not valid.all()
    rows = negatives[valid]  # (pairs, N)
    positive = positives[valid]
    assert (rows != positive[:, None]).all(), "a positive was drawn"
    assert (rows.sort(-1).values.diff(dim=-1) > 0).all(), "a row repeats a negative"
    assert torch.isin(rows, pool).all()
    in_pool = torch.isin(positive, pool)
    assert in_pool.any() and (~in_pool).any()  # both cases occur: the positive dropped, or the pool's last frame
    assert (rows[~in_pool] == pool[:num_negatives]).all()
    assert (shared.keep.diff(dim=-1) > 0).all(), "keep is in pool order"
    # sample_negatives(scope="batch_shared") draws the same with the same generator.
    again = sample_negatives(
        lengths,
        num_frames,
        steps,
        num_negatives,
        scope="batch_shared",
        stride=stride,
        generator=torch.Generator().manual_seed(1),
    )
    assert torch.equal(again, negatives)


def test_shared_negatives_are_uniform_over_the_other_frames():
    """Over many steps, each valid frame other than the positive is a negative of a given
    prediction with probability N / (frames - 1), whether or not the positive was pooled."""
    lengths = torch.tensor([6, 4])  # 10 valid frames of 2 x 6
    generator, draws, num_negatives = torch.Generator().manual_seed(0), 4000, 3
    counts = torch.zeros(12)
    for _ in range(draws):
        shared = sample_shared_negatives(lengths, 6, 1, num_negatives, generator=generator)
        counts += torch.bincount(
            shared.pool[shared.keep[0, 0, 0]], minlength=12
        )  # (b, t, k) = (0, 0, 1): positive frame 1
    others = torch.tensor([0, 2, 3, 4, 5, 6, 7, 8, 9])
    assert counts[1] == 0 and counts[10:].sum() == 0  # never the positive, never padding (frames 10, 11 of sequence 1)
    torch.testing.assert_close(counts[others] / draws, torch.full((9,), num_negatives / 9), atol=0.03, rtol=0)


def test_score_shared_equals_score_candidates_on_the_same_candidates():
    generator = torch.Generator().manual_seed(3)
    predictions = torch.randn(3, 10, 4, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    latents = torch.randn(3, 10, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([10, 8, 5])
    sample = sample_candidates(
        predictions, latents, lengths, generator, offsets=None, num_negatives=7, negative_scope="batch_shared"
    )
    assert sample.shared is not None and sample.candidates.shape == (3, 10, 4, 8)
    weights = torch.randn(sample.candidates.shape, generator=generator, dtype=torch.float64)
    shared = scores_and_gradients(
        lambda p, z, c: score_shared(p, z, c, sample.shared), predictions, latents, sample.candidates, weights
    )
    gathered = scores_and_gradients(score_candidates, predictions, latents, sample.candidates, weights)
    for one, other in zip(shared, gathered):
        torch.testing.assert_close(one, other, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sample.scores(), shared[0], rtol=1e-12, atol=1e-12)
    batch = sample_candidates(
        predictions, latents, lengths, generator, offsets=None, num_negatives=7, negative_scope="batch"
    )
    assert batch.shared is None


def test_shared_negatives_need_n_plus_one_valid_frames():
    with pytest.raises(
        ValueError,
        match=r"N \+ 1 = 6 distinct frames, but the batch has 5 valid frames.*num_negatives.*negative_scope=batch",
    ):
        sample_shared_negatives(torch.tensor([3, 2]), 4, 1, 5, generator=torch.Generator())
    shared = sample_shared_negatives(
        torch.tensor([3, 3]), 4, 1, 5, generator=torch.Generator()
    )  # exactly N + 1: the whole batch
    assert sorted(shared.pool.tolist()) == [0, 1, 2, 4, 5, 6]


def test_batch_shared_trains_speech_tiny(tmp_path):
    run = tmp_path / "run"
    train(tiny_config("model.loss.negative_scope=batch_shared"), run)
    records = read_metrics(run)
    assert [r["step"] for r in records if "split" not in r] == [1, 2, 3, 4]
    assert all(math.isfinite(r["loss"]) for r in records)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4


@pytest.mark.parametrize("name", ["infonce", "nt_xent", "margin", "triplet", "binary"])
def test_every_objective_takes_a_step_with_shared_negatives(name, tmp_path, monkeypatch):
    """Each objective trains a step with batch_shared, and its candidates are scored by score_shared."""
    calls = []

    def spy(*args):
        calls.append(args[-1])
        return score_shared(*args)

    monkeypatch.setattr(cpc.infonce, "score_shared", spy)
    # Naming a loss resets model.loss to that objective's defaults: name it first.
    config = tiny_config(
        f"model.loss.name={name}",
        "model.loss.num_negatives=16",
        "model.loss.negative_scope=batch_shared",
        "train.max_steps=1",
        "train.valid_batches=0",
    )
    last = train(config, tmp_path / "run")
    assert last["step"] == 1 and math.isfinite(last["loss"])
    assert calls and all(len(shared.pool) == 17 for shared in calls)


# ----------------------------------------------------------------------------- the corpus held on the device


def resident(root=SAMPLE, overrides=(), *, rank=0, start_step=0):
    """ResidentSpeechData on the CPU (data.loading=device) over ``root``, batches of 16 windows of 4096 samples."""
    config = small_config(
        root, **{"data.loading": "device", "train.batch_size": 16, "data.valid_fraction": 0.05, **dict(overrides)}
    )
    return ResidentSpeechData(config, rank=rank, start_step=start_step, device=torch.device("cpu")), config


def kept_files(config):
    """The training files in the order ResidentSpeechData lays them out: by speaker, as listed."""
    data = config.data
    corpus = split_corpus(data.root, data.window, valid_fraction=data.valid_fraction, seed=config.train.seed)
    return sorted(corpus.train, key=lambda file: file.speaker)


def locate(source, starts):
    """(file index, offset in that file) of each window start in ``source.audio``."""
    file_start = source.file_start.numpy()
    files = np.searchsorted(file_start, starts.numpy(), side="right") - 1
    return files, starts.numpy() - file_start[files]


def test_resident_batches_are_a_pure_function_of_seed_rank_and_step():
    source, config = resident()
    first = source.batch(5)
    assert first.shape == (16, 4096) and first.dtype == torch.float32
    assert torch.equal(source.batch(5), first)
    assert not torch.equal(source.batch(6), first)
    rebuilt, _ = resident(start_step=5)
    assert torch.equal(rebuilt.batch(5), first)
    batches = rebuilt.train_batches()
    assert torch.equal(next(batches)[0], first) and torch.equal(
        next(batches)[0], source.batch(6)
    )  # resumes at start_step
    other_rank, _ = resident(rank=1)
    assert not torch.equal(other_rank.batch(5), first)
    other_seed, _ = resident(SAMPLE, [("train.seed", 1)])
    assert not torch.equal(other_seed.batch(5), first)


@pytest.mark.parametrize("corpus", ["sample", "full-scale-noise"])
def test_resident_windows_are_the_files_samples(corpus, tmp_path):
    """Each window is its file's int16 samples / 32768 (full-scale noise catches a wrong scale)."""
    root = SAMPLE
    if corpus != "sample":
        root = tmp_path
        write_files(root, {"1": [4096, 9000, 20000], "2": [5000, 30000]}, amplitude=32768)
    source, config = resident(root)
    files = kept_files(config)
    lengths = np.array([file.num_samples for file in files])
    assert len(source.audio) == lengths.sum() and source.audio.dtype == torch.int16
    assert np.array_equal(source.file_start.numpy(), np.cumsum(lengths) - lengths)
    for step in range(3):
        starts = source.window_starts(step)
        batch = source.batch(step)
        for (index, offset), window in zip(zip(*locate(source, starts)), batch):
            expected, _ = sf.read(files[index].path, start=int(offset), stop=int(offset) + 4096, dtype="int16")
            assert torch.equal((window * 32768).round().to(torch.int16), torch.from_numpy(expected)), files[index].path


def test_resident_windows_of_float_and_8_khz_files_are_the_loaders_quantised(tmp_path):
    """A float file is quantised to 16 bits (full scale clipped to 32767 / 32768), an 8 kHz file
    resampled first: the windows are the loader's (read_audio's) windows, quantised."""
    from cpc.speech.audio import read_audio

    folder = tmp_path / "1" / "1"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    loud = rng.uniform(-1, 1, 6000).astype(np.float32)
    loud[::50], loud[25::50] = 1.0, -1.0
    sf.write(folder / "1-1-0000.wav", loud, SAMPLE_RATE, subtype="FLOAT")
    sf.write(folder / "1-1-0001.wav", rng.integers(-20000, 20000, 3000).astype(np.int16), 8000, subtype="PCM_16")
    source, config = resident(tmp_path, [("data.valid_fraction", 0.0)])
    files = kept_files(config)
    assert [file.sample_rate for file in files] == [SAMPLE_RATE, 8000]
    for step in range(4):
        for (index, offset), window in zip(zip(*locate(source, source.window_starts(step))), source.batch(step)):
            wave = read_audio(files[index].path, int(offset), int(offset) + 4096, sample_rate=files[index].sample_rate)
            expected = np.clip(np.round(wave * 32768), -32768, 32767) / 32768
            assert torch.equal(window, torch.from_numpy(expected.astype(np.float32))), files[index].path


def test_resident_windows_never_cross_a_file_boundary(tmp_path):
    """Short files (one to a few hundred offsets each) and many draws: every window ends inside its file."""
    write_files(tmp_path, {"1": [4096, 4100, 4400, 9000], "2": [4097, 5000]})
    source, config = resident(tmp_path, [("data.valid_fraction", 0.0), ("train.batch_size", 500)])
    lengths = np.array([file.num_samples for file in kept_files(config)])
    for step in range(20):
        files, offsets = locate(source, source.window_starts(step))
        assert (offsets >= 0).all() and (offsets + 4096 <= lengths[files]).all(), step


def write_files(root, speakers: dict, amplitude: int = 8000):
    """16-bit FLAC noise files of the given lengths (samples), LibriSpeech layout: root/<spk>/1/<spk>-1-<i>.flac."""
    rng = np.random.default_rng(0)
    for speaker, lengths in speakers.items():
        folder = root / speaker / "1"
        folder.mkdir(parents=True)
        for index, length in enumerate(lengths):
            noise = rng.integers(-amplitude, amplitude, length).astype(np.int16)
            sf.write(folder / f"{speaker}-1-{index:04d}.flac", noise, SAMPLE_RATE, subtype="PCM_16")


def chi_square(counts, weights):
    expected = counts.sum() * weights / weights.sum()
    return float(((counts - expected) ** 2 / expected).sum())


def test_resident_files_are_drawn_in_proportion_to_their_offsets(tmp_path):
    """20k draws over files whose offset counts (1, 501, 2001, 8001, 16001 for a 4000-sample
    window) are far from proportional to their lengths: the draws follow the offsets."""
    lengths = np.array([4000, 4500, 6000, 12000, 20000])
    write_files(tmp_path, {"1": lengths.tolist()})
    source, config = resident(
        tmp_path, [("data.window", 4000), ("data.valid_fraction", 0.0), ("train.batch_size", 1000)]
    )
    assert [file.num_samples for file in kept_files(config)] == lengths.tolist()
    files = np.concatenate([locate(source, source.window_starts(step))[0] for step in range(20)])
    counts = np.bincount(files, minlength=len(lengths)).astype(float)
    offsets = (lengths - 4000 + 1).astype(float)
    assert chi_square(counts, offsets) < 25, (counts, offsets)  # df = 4: p < 1e-4 above 23.5
    assert chi_square(counts, lengths.astype(float)) > 1000  # the check can tell offsets from lengths


def test_resident_same_speaker_batches(tmp_path):
    """Each batch inside one speaker; speakers drawn in proportion to their offsets (1:3 here)."""
    write_files(tmp_path, {"1": [6000, 6000], "2": [10000, 10000, 10000]})  # offsets 2 x 2001 against 3 x 6001
    source, config = resident(
        tmp_path,
        [
            ("data.window", 4000),
            ("data.valid_fraction", 0.0),
            ("data.same_speaker_batches", True),
            ("train.batch_size", 8),
        ],
    )
    speakers = np.array([file.speaker for file in kept_files(config)])
    per_batch = [set(speakers[locate(source, source.window_starts(step))[0]]) for step in range(400)]
    assert all(len(batch) == 1 for batch in per_batch)
    second = sum(batch == {"2"} for batch in per_batch)
    assert abs(second / 400 - 18003 / (18003 + 4002)) < 0.07, second
    sample, config = resident(SAMPLE, [("data.same_speaker_batches", True)])  # the sample corpus' 6 speakers
    speakers = np.array([file.speaker for file in kept_files(config)])
    seen = [set(speakers[locate(sample, sample.window_starts(step))[0]]) for step in range(30)]
    assert all(len(batch) == 1 for batch in seen) and len(set.union(*seen)) > 1


def test_build_speech_data_picks_the_source(monkeypatch):
    cpu = torch.device("cpu")
    for loading, kind in [("auto", SpeechData), ("loader", SpeechData), ("device", ResidentSpeechData)]:
        source = build_speech_data(small_config(SAMPLE, **{"data.loading": loading}), device=cpu)
        assert type(source) is kind, loading
    # On a CUDA device whose free memory is too small for the corpus: auto falls back to the
    # loader, device refuses (nothing reaches the device in either case).
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1_000_000, 80_000_000_000))
    cuda = torch.device("cuda")
    assert type(build_speech_data(small_config(SAMPLE, **{"data.loading": "auto"}), device=cuda)) is SpeechData
    with pytest.raises(ConfigError, match=r"data.loading=device: the training corpus takes .* GB as int16"):
        build_speech_data(small_config(SAMPLE, **{"data.loading": "device"}), device=cuda)
    with pytest.raises(ConfigError, match="data.loading"):
        small_config(SAMPLE, **{"data.loading": "gpu"})


def test_resident_resume_equals_uninterrupted(tmp_path):
    config = tiny_config("data.loading=device")
    train(config, tmp_path / "full")
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "full" / "checkpoints" / "step_2.pt", resumed / "checkpoints" / "last.pt")
    shutil.copy(tmp_path / "full" / "metrics.jsonl", resumed / "metrics.jsonl")
    train(config, resumed, resume=True)
    full = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    again = load_checkpoint(resumed / "checkpoints" / "last.pt")
    assert again["step"] == full["step"] == 4
    for name, tensor in full["model"].items():
        torch.testing.assert_close(again["model"][name], tensor, rtol=0, atol=0, msg=name)
    drop_speed = lambda records: [{k: v for k, v in r.items() if k != "samples_per_s"} for r in records]
    assert drop_speed(read_metrics(resumed)) == drop_speed(read_metrics(tmp_path / "full"))


def test_resume_keeps_the_data_source_that_auto_picked(tmp_path, caplog):
    """auto decides by free device memory; a resume must not switch the batch stream (recorded in the checkpoint)."""
    import logging

    run = tmp_path / "run"
    train(tiny_config("data.loading=auto", "train.max_steps=2"), run)  # the loader, on the CPU
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert state["data_loading"] == "loader"
    state["data_loading"] = "device"  # as if auto had held the corpus on a GPU
    torch.save(state, run / "checkpoints" / "last.pt")
    with caplog.at_level(logging.INFO, logger="cpc.speech.resident"):
        train(tiny_config("data.loading=auto", "train.max_steps=3"), run, resume=True)
    assert any("windows cut on the device" in record.getMessage() for record in caplog.records)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["data_loading"] == "device"


@pytest.mark.parametrize(
    "recipe, norm",
    [
        ("speech/paper", "none"),
        ("speech/tiny", "channel"),
        ("speech/tiny", "batch"),
        ("speech/tiny", "channel_unbiased"),
    ],
)
def test_channels_last_encoder_gives_the_same_latents_loss_and_gradients(recipe, norm):
    """The channels-last layout (the CPU default with the channel norm) runs the conv stack as
    2-D convolutions over (B, C, 1, T) stored as (B, T, C): a layout, not a model."""
    from cpc.model import build_model

    torch.manual_seed(0)
    model = build_model(load_config(recipe, ["model.predictor.init=default", f"model.encoder.norm={norm}"]))
    waveforms, lengths = torch.randn(2, 6400), torch.tensor([6400, 4000])  # one padded sequence: the masks too

    def run(channels_last):
        model.encoder.channels_last = channels_last
        model.zero_grad()
        latents, latent_lengths = model.encoder(waveforms, lengths)
        loss = model(waveforms, generator=torch.Generator().manual_seed(0))["loss"]
        loss.backward()
        return latents.detach(), latent_lengths, loss.detach(), [p.grad.clone() for p in model.parameters()]

    plain = run(False)
    fast = run(True)
    torch.testing.assert_close(fast[0], plain[0], rtol=1e-5, atol=1e-5)
    assert fast[0].is_contiguous() and torch.equal(fast[1], plain[1])
    torch.testing.assert_close(fast[2], plain[2], rtol=1e-5, atol=1e-6)
    for got, expected in zip(fast[3], plain[3]):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_the_encoder_picks_channels_last_on_the_cpu_with_the_channel_norm():
    from cpc.model import build_model

    waveforms = torch.zeros(1, 3200)
    assert build_model(load_config("speech/tiny")).encoder.uses_channels_last(waveforms)
    assert not build_model(load_config("speech/paper")).encoder.uses_channels_last(
        waveforms
    )  # no norm: oneDNN is slower
    model = build_model(load_config("speech/paper"))
    model.encoder.channels_last = True
    assert model.encoder.uses_channels_last(waveforms)


def test_channels_last_needs_the_audio_encoder(tmp_path):
    with pytest.raises(ConfigError, match="channels_last=true needs the raw-audio conv encoder"):
        train(load_config("image/fashion_mnist", ["train.channels_last=true"]), tmp_path / "run")


# ----------------------------------------------------------------------------- torchrun with one process


CHILD = """
import logging, sys
logging.basicConfig(level=logging.INFO)
import torch.distributed as dist
import cpc.train
from cpc.config import load_config

wrapped = []
class Spy(cpc.train.DistributedDataParallel):
    def __init__(self, *args, **kwargs):
        wrapped.append(1)
        super().__init__(*args, **kwargs)

cpc.train.DistributedDataParallel = Spy
cpc.train.train(load_config(sys.argv[1]), sys.argv[2])
print("ddp", len(wrapped), dist.get_backend(), dist.get_world_size())
dist.destroy_process_group()
"""


def free_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


@pytest.mark.slow
def test_torchrun_env_with_one_process_trains_through_ddp(tmp_path):
    """WORLD_SIZE=1 under torchrun's env starts gloo and wraps DDP, and trains exactly as alone."""
    config = tiny_config("train.max_steps=2", "train.valid_batches=0", "data.loading=device")
    recipe = tmp_path / "recipe.yaml"
    OmegaConf.save(config, recipe)
    env = {
        **os.environ,
        "WORLD_SIZE": "1",
        "RANK": "0",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(recipe), str(tmp_path / "ddp")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "torch.distributed: gloo, rank 0 of 1" in result.stderr
    assert "ddp 1 gloo 1" in result.stdout
    records = read_metrics(tmp_path / "ddp")
    assert [r["step"] for r in records] == [1, 2] and all(math.isfinite(r["loss"]) for r in records)
    train(config, tmp_path / "alone")  # this process has no torchrun env: no process group, no DDP
    alone = load_checkpoint(tmp_path / "alone" / "checkpoints" / "last.pt")["model"]
    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")["model"]
    assert alone.keys() == ddp.keys()  # DDP's "module." prefix never reaches the checkpoint
    for name, tensor in alone.items():
        torch.testing.assert_close(ddp[name], tensor, rtol=0, atol=0, msg=name)


# ----------------------------------------------------------------------------- the training benchmark


@pytest.mark.slow
def test_bench_train_batch_sizes_data_and_profile(tmp_path):
    out, profiles = tmp_path / "bench.json", tmp_path / "profiles"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cpc.cli",
            "bench",
            "train",
            "--recipe",
            "speech/tiny",
            "--skip-copied",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--batch-size",
            "2",
            "--batch-size",
            "3",
            "--data",
            "--profile",
            str(profiles),
            "--json",
            str(out),
            "data.window=4096",
            "data.loading=device",
            "data.num_workers=0",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert sorted(report["recipes"]) == ["speech/tiny x2", "speech/tiny x3"]
    for batch_size in (2, 3):
        entry = report["recipes"][f"speech/tiny x{batch_size}"]
        assert entry["batch_size"] == batch_size and entry["window"] == 4096 and entry["median_step_s"] > 0
        assert entry["with_data"] is True and entry["data_loading"] == "device"
        assert entry["mfu"] is None and entry["peak_bf16_tflops"] is None and entry["model_gflop_per_step"] > 0
        assert entry["model_gflop_per_step"] == pytest.approx(3 * batch_size * entry["model_gflop_per_window_forward"])
        path = Path(entry["profile"]["path"])
        assert path == profiles / f"speech-tiny-b{batch_size}.txt" and path.is_file() and path.stat().st_size > 0
        assert entry["profile"]["steps"] == 3
    assert "| speech/tiny | 2 x 4096 |" in result.stdout and "| speech/tiny | 3 x 4096 |" in result.stdout


def test_bench_train_refuses_a_batch_size_of_zero(capsys):
    from cpc.cli import main

    assert main(["bench", "train", "--recipe", "speech/tiny", "--batch-size", "2", "--batch-size", "0"]) == 2
    assert "--batch-size must be at least 1, got 0" in capsys.readouterr().err


def test_training_flops_of_the_paper_recipe_match_the_hand_count():
    from cpc.bench import training_flops
    from cpc.model import build_model

    model = build_model(load_config("speech/paper"))
    flops = training_flops(model, 8, 20480, 0.5, "cpu")
    # conv + GRU 4.9741824 GFLOP per audio second (tests/test_bench.py), plus 12 maps W_k of
    # 256 x 512 at 100 frames a second, for 20480 / 16000 s.
    per_window = (4.9741824 + 2 * 12 * 256 * 512 * 100 / 1e9) * 20480 / 16000
    assert flops["model_gflop_per_window_forward"] == pytest.approx(per_window, rel=1e-12)
    assert flops["model_gflop_per_step"] == pytest.approx(3 * 8 * per_window, rel=1e-12)
    assert flops["achieved_tflops"] == pytest.approx(3 * 8 * per_window / 0.5 / 1e3, rel=1e-12)
    assert flops["mfu"] is None and flops["peak_bf16_tflops"] is None and "CUDA" in flops["peak_source"]
    assert flops["paper_budget_minutes"] == pytest.approx(300_000 * 64 / (8 / 0.5) / 60)


def test_optimizer_and_kernel_settings_on_the_cpu():
    """Adam as optim says, not fused off CUDA; configure_kernels leaves a CPU process' settings alone."""
    from cpc.model import build_model
    from cpc.train import build_optimizer, configure_kernels

    config = small_config(SAMPLE, **{"optim.lr": 0.01, "optim.weight_decay": 0.1})
    model = build_model(config)
    optimizer = build_optimizer(model, config, torch.device("cpu"))
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.Adam) and group["lr"] == 0.01 and group["weight_decay"] == 0.1
    assert group["betas"] == tuple(config.optim.betas) and not group["fused"]
    before = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32)
    configure_kernels(config, torch.device("cpu"))
    assert (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32) == before
