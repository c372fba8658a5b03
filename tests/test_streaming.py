"""Streaming extraction equals offline extraction, frame for frame, for any chunking.

Property: for random inputs of random lengths cut into random chunks (runs of 1-sample chunks,
odd sizes, empty chunks, one big chunk), the frames returned by ``stream(chunk)`` and
``flush()``, concatenated, equal ``model.extract_features(x[None])`` within 1e-5, for every
shipped speech recipe and both layers. Biases and norm affine parameters are perturbed so
that their zero/one initialisation cannot hide a misplaced frame. Frames also come out as
early as the receptive field allows (``ready_frames``), which is the latency the docs state.
"""

import numpy as np
import pytest
import torch

import cpc
from cpc.config import load_config
from cpc.resources import list_recipes

SPEECH_RECIPES = [name for name in list_recipes() if name.startswith("speech/")]
ATOL = 1e-5


def perturbed_model(recipe: str, overrides: list[str] = (), seed: int = 0) -> cpc.CPC:
    """The recipe's untrained model with every 1-D parameter (biases, norm affine) and batch-norm statistic moved at random."""
    torch.manual_seed(seed)
    model = cpc.build_model(load_config(recipe, list(overrides))).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if tensor.dim() == 1 and tensor.dtype.is_floating_point:
                noise = 0.3 * torch.randn(tensor.shape, generator=generator)
                tensor.copy_((tensor + noise).abs() + 0.5 if "running_var" in name else tensor + noise)
    return model


def random_chunks(rng: np.random.Generator, num_samples: int, kind: str) -> list[int]:
    """Chunk sizes summing to num_samples: ``ones`` (all 1-sample), ``one`` (a single chunk) or
    ``mixed`` (runs of 1-sample chunks, empty chunks, odd sizes up to a few frames, big ones)."""
    if kind == "ones":
        return [1] * num_samples
    if kind == "one":
        return [num_samples]
    sizes, left = [], num_samples
    while left > 0:
        draw = rng.random()
        if draw < 0.25:
            sizes += [1] * int(rng.integers(1, 200))
        elif draw < 0.3:
            sizes.append(0)
        elif draw < 0.85:
            sizes.append(int(2 * rng.integers(1, 300) + 1))  # odd, 3..599
        else:
            sizes.append(int(rng.integers(600, 4000)))
        left = num_samples - sum(sizes)
    sizes[-1] += left  # left <= 0: trim the last chunk
    return sizes


def stream_all(stream, waveform: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Push waveform (S,) in chunks of ``sizes``, checking after each chunk that every frame that
    can be complete has come out; flush; return the frames (T, D)."""
    outputs, received, returned = [], 0, 0
    for chunk in waveform.split(sizes):
        outputs.append(stream(chunk))
        received, returned = received + len(chunk), returned + len(outputs[-1])
        assert returned == stream.ready_frames(received), f"after {received} samples"
    outputs.append(stream.flush())
    return torch.cat(outputs)


def offline(model, waveform: torch.Tensor, layer: str) -> torch.Tensor:
    with torch.no_grad():
        features, _ = model.extract_features(waveform[None], layer=layer)
    return features[0]  # (T, D)


@pytest.mark.parametrize("recipe", SPEECH_RECIPES)
@pytest.mark.parametrize("kind, lengths", [("ones", [1500]), ("mixed", [8000, 4123, 901]), ("one", [7777, 465])])
def test_any_chunking_equals_offline_extraction(recipe, kind, lengths):
    model = perturbed_model(recipe)
    rng = np.random.default_rng([len(kind), *lengths])
    for nominal in lengths:
        num_samples = int(rng.integers(nominal // 2, nominal + 1)) if kind == "mixed" else nominal
        waveform = 0.1 * torch.from_numpy(rng.standard_normal(num_samples).astype(np.float32))
        sizes = random_chunks(rng, num_samples, kind)
        for layer in ("encoder", "context"):
            streamed = stream_all(model.stream(layer), waveform, sizes)
            expected = offline(model, waveform, layer)
            assert streamed.shape == expected.shape, f"{recipe} {layer} S={num_samples}"
            torch.testing.assert_close(
                streamed, expected, rtol=0, atol=ATOL, msg=f"{recipe} {layer} S={num_samples} {kind}"
            )


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.context.name=lstm", "model.context.num_layers=2"],  # hidden state is a tuple (h, c)
        ["model.encoder.norm=batch"],  # eval-mode batch norm is per frame too
        # kernel < stride, no padding, padding wider than half the kernel: a stack unlike the paper's
        [
            "model.encoder.layers=[{channels: 16, kernel_size: 3, stride: 4, padding: 0}, {channels: 16, kernel_size: 5, stride: 1, padding: 4},"
            " {channels: 8, kernel_size: 2, stride: 3, padding: 1}]"
        ],
    ],
    ids=["lstm", "batch-norm", "odd-stack"],
)
def test_other_architectures_stream_exactly(overrides):
    model = perturbed_model("speech/tiny", overrides, seed=1)
    rng = np.random.default_rng(1)
    for num_samples in (3001, 517):
        waveform = 0.1 * torch.from_numpy(rng.standard_normal(num_samples).astype(np.float32))
        sizes = random_chunks(rng, num_samples, "mixed")
        for layer in ("encoder", "context"):
            torch.testing.assert_close(
                stream_all(model.stream(layer), waveform, sizes), offline(model, waveform, layer), rtol=0, atol=ATOL
            )


def test_latency_of_the_paper_stack():
    """Frame t comes out once 160 t + 312 samples are in: 152 samples (9.5 ms) past its own hop."""
    stream = cpc.build_model(load_config("speech/paper")).eval().stream()
    assert stream.downsample_rate == 160 and stream.lookahead == 152
    assert [stream.ready_frames(n) for n in (0, 311, 312, 471, 472, 160 * 9 + 312)] == [0, 0, 1, 1, 2, 10]


@pytest.mark.parametrize("num_samples", [1, 100, 300, 464])
def test_input_shorter_than_the_receptive_field(num_samples):
    """Below F = 465 samples the frames come mostly from flush(), as many as offline (0 when offline has none)."""
    model = perturbed_model("speech/tiny")
    waveform = 0.1 * torch.randn(num_samples)
    expected_frames = int(model.output_lengths(torch.tensor(num_samples)))
    for layer in ("encoder", "context"):
        stream = model.stream(layer)
        streamed = torch.cat(
            [stream(waveform[: num_samples // 2]), stream(waveform[num_samples // 2 :]), stream.flush()]
        )
        if expected_frames == 0:  # offline's convolutions refuse an input this short
            assert streamed.shape == (0, stream.output_size)
        else:
            torch.testing.assert_close(streamed, offline(model, waveform, layer), rtol=0, atol=ATOL)
            assert len(streamed) == expected_frames > stream.ready_frames(num_samples)


def test_reuse_after_reset_and_after_flush():
    model = perturbed_model("speech/tiny")
    first, second = 0.1 * torch.randn(3000), 0.1 * torch.randn(2345)
    stream = model.stream()
    stream(first[:1234])
    stream.reset()  # drop the first stream midway
    torch.testing.assert_close(
        torch.cat([stream(second[:999]), stream(second[999:]), stream.flush()]),
        offline(model, second, "context"),
        rtol=0,
        atol=ATOL,
    )
    # flush() ended that stream: the next one starts clean
    torch.testing.assert_close(
        torch.cat([stream(first[None]), stream.flush()]), offline(model, first, "context"), rtol=0, atol=ATOL
    )
    assert stream.samples_received == 0 and stream.hidden is None


def test_bad_input_is_rejected():
    model = perturbed_model("speech/tiny")
    stream = model.stream()
    with pytest.raises(ValueError, match=r"\(S_chunk,\) or \(1, S_chunk\), got \(2, 100\)"):
        stream(torch.zeros(2, 100))
    with pytest.raises(ValueError, match="float"):
        stream(torch.zeros(100, dtype=torch.long))
    with pytest.raises(ValueError, match="layer='predictor'"):
        model.stream("predictor")
    with pytest.raises(ValueError, match="model.eval"):
        perturbed_model("speech/tiny", ["model.encoder.norm=batch"]).train().stream()
