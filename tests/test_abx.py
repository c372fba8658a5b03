"""ABX: DTW against a loop reference, a hand-computed example, identical tokens, shuffled labels, bad items, and the
ZeroSpeech reference (zerospeech-libriabx2): equal scores on a generated set when it is installed, and the protocol
details it fixes (frame rounding, DTW ties, zero frames, averaging order, draws) pinned without it."""

from __future__ import annotations

import math
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from cpc.speech.abx import DEFAULT_SEED, abx_error, angular_distances, dtw_average_cost, token_frames, unit_frames
from cpc.speech.corpus.formats import ItemRow, read_item, write_item
from cpc.speech.features import FeatureError


def reference_dtw(distances: np.ndarray) -> float:
    """The textbook loop: cumulative cost with steps (1,1), (0,1), (1,0), divided by the best path's length."""
    rows, columns = distances.shape
    cost = np.full((rows + 1, columns + 1), np.inf)
    length = np.zeros((rows + 1, columns + 1), dtype=int)
    cost[0, 0] = 0.0
    for i in range(1, rows + 1):
        for j in range(1, columns + 1):
            options = [
                (cost[i - 1, j - 1], length[i - 1, j - 1]),
                (cost[i, j - 1], length[i, j - 1]),
                (cost[i - 1, j], length[i - 1, j]),
            ]
            best = min(range(3), key=lambda k: options[k][0])  # first minimum: diagonal, then (0,1), then (1,0)
            cost[i, j] = distances[i - 1, j - 1] + options[best][0]
            length[i, j] = options[best][1] + 1
    return cost[rows, columns] / length[rows, columns]


def test_dtw_matches_loop_reference_on_padded_batches():
    generator = torch.Generator().manual_seed(0)
    distances = torch.rand(7, 9, 6, generator=generator, dtype=torch.float64)
    first = torch.tensor([9, 1, 4, 9, 2, 6, 1])
    second = torch.tensor([6, 6, 1, 2, 5, 6, 1])
    batched = dtw_average_cost(distances, first, second)
    for p in range(7):
        assert batched[p].item() == pytest.approx(
            reference_dtw(distances[p, : first[p], : second[p]].numpy()), abs=1e-12
        )


def test_dtw_hand_values():
    # One row against three columns: the only path visits all three cells: (1 + 2 + 3) / 3.
    assert dtw_average_cost(
        torch.tensor([[[1.0, 2.0, 3.0]]]), torch.tensor([1]), torch.tensor([3])
    ).item() == pytest.approx(2.0)
    # Diagonal of zeros beats everything: cost 0 over 2 cells.
    assert (
        dtw_average_cost(torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]), torch.tensor([2]), torch.tensor([2])).item() == 0.0
    )
    # [[1, 5], [1, 1]]: best path (1,1)->(2,1)->(2,2) costs 3 over 3 cells; the diagonal costs 2 over 2 cells
    # but the path is chosen by total cost: 1 + 1 = 2 < 3, so the diagonal wins: 2 / 2 = 1.
    assert dtw_average_cost(
        torch.tensor([[[1.0, 5.0], [1.0, 1.0]]]), torch.tensor([2]), torch.tensor([2])
    ).item() == pytest.approx(1.0)


def test_dtw_ties_prefer_0_1_over_1_0_as_the_reference():
    # Into the last cell (3, 4): diagonal (2, 3) costs 1; (2, 4) costs 0 over 4 cells and (3, 3) costs 0 over 3 cells.
    # The reference walks back with "elif c_left <= c_up: j -= 1": (3, 3), 4 cells, 1 / 4. Taking (2, 4) gives 1 / 5.
    distances = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]])
    assert dtw_average_cost(distances, torch.tensor([3]), torch.tensor([4])).item() == 0.25
    # Not symmetric: the transposed matrix meets the same tie the other way round.
    assert dtw_average_cost(distances.transpose(1, 2).contiguous(), torch.tensor([4]), torch.tensor([3])).item() == 0.2


def test_angular_distance_values():
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    distances = angular_distances(x, x[:, :1])
    np.testing.assert_allclose(distances[0, :, 0].numpy(), [0.0, 0.5, 1.0], atol=1e-6)


def test_zero_frames_are_farthest_from_everything_but_zero_frames():
    # The reference's normalize_with_singularity: "put the null vector at the maximal cosine distance from any non-null vector".
    x = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [-3.0, 4.0]]])
    np.testing.assert_allclose(
        angular_distances(x, x)[0].numpy(), [[0.0, 1.0, 0.7048], [1.0, 0.0, 1.0], [0.7048, 1.0, 0.0]], atol=1e-4
    )
    unit = unit_frames(x[0])[None]  # (1, 3, 3): unit rows extended by 1e-12; the zero row by -2e12
    np.testing.assert_allclose(unit[0, 1].numpy(), [1 / math.sqrt(2), 1 / math.sqrt(2), -2e12])
    np.testing.assert_array_equal(
        angular_distances(unit, unit, normalized=True).numpy(), angular_distances(x, x).numpy()
    )


def test_token_frames_round_as_the_reference():
    # [ceil(100 onset - 0.5), floor(100 offset - 0.5)): frames whose centres lie inside, less the last one.
    assert token_frames(0.10, 0.15, 100) == (10, 14)  # centres 0.105 .. 0.145 inside; 14 left out
    assert token_frames(0.104, 0.156, 100) == (10, 15)  # centre 0.105 is past 0.104; 0.155 before 0.156 (left out)
    assert token_frames(0.0, 0.02, 100) == (0, 1)  # two centres inside: one frame
    assert token_frames(0.101, 0.114, 100) == (10, 10)  # one centre inside: no frame
    assert token_frames(0.95, 1.2, 100) == (95, 100)  # clipped at the end
    assert token_frames(1.3, 1.5, 100) == (130, 100)  # past the end: empty


def test_frameless_tokens_are_left_out():
    features, items = _hand_example()
    # Rows that cover fewer than two frame centres: 7 ms with none, 13 ms with one (0.015 s).
    items += [ItemRow("f1", 0.005, 0.012, "b", "x", "y", "s1"), ItemRow("f1", 0.011, 0.024, "b", "x", "y", "s1")]
    result = abx_error(features, items)
    assert result["dropped_tokens"] == 2 and result["tokens"] == 6
    assert result["within"] == pytest.approx(62.5) and result["across"] == pytest.approx(25.0)  # as without them


def _unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def _hand_example():
    """Single-frame 2-D tokens at known angles (rows of 20 ms: two frame centres, the reference keeps the first);
    one context (x_y). Speaker s1: a at 0 and 30 degrees, b at 25 and 90; speaker s2: a at 10, b at 80. Distances
    are angle differences / 180."""
    features = {
        "f1": np.array([_unit(0), _unit(30), _unit(25), _unit(90)], dtype=np.float32),
        "f2": np.array([_unit(10), _unit(80)], dtype=np.float32),
    }
    items = [
        ItemRow("f1", 0.00, 0.02, "a", "x", "y", "s1"),
        ItemRow("f1", 0.01, 0.03, "a", "x", "y", "s1"),
        ItemRow("f1", 0.02, 0.04, "b", "x", "y", "s1"),
        ItemRow("f1", 0.03, 0.05, "b", "x", "y", "s1"),
        ItemRow("f2", 0.00, 0.02, "a", "x", "y", "s2"),
        ItemRow("f2", 0.01, 0.03, "b", "x", "y", "s2"),
    ]
    return features, items


def test_abx_hand_computed_example():
    features, items = _hand_example()
    result = abx_error(features, items)
    # Within (only s1 has two tokens of a phone):
    #   (a, b): A,X in {0, 30} (d = 30); B = 25 -> d(B, X) = 5 or 25 < 30: error; B = 90 -> 60 or 90: no error -> 2/4
    #   (b, a): A,X in {25, 90} (d = 65); X = 90: B = 0 -> 90 (ok), B = 30 -> 60 (error); X = 25: B = 0 -> 25, B = 30 -> 5 (errors) -> 3/4
    #   mean over phone pairs: (0.5 + 0.75) / 2 = 62.5 %
    assert result["within"] == pytest.approx(62.5)
    # Across: (a, b) s1->s2: X = 10: d(A,X) = 10, 20; d(B,X) = 15, 80 -> only (A=30, B=25) errs: 1/4
    #         (a, b) s2->s1: A = 10, B = 80, X in {0, 30}: 10 < 80, 20 < 50 -> 0
    #         (b, a) s1->s2: X = 80: d(A,X) = 55, 10; d(B,X) = 80, 50 -> only (A=25, B=30) errs: 1/4
    #         (b, a) s2->s1: A = 80, B = 10, X in {25, 90}: 55 > 15 errs, 10 < 80 -> 1/2
    #   per phone pair, mean over speakers: (a, b) = 0.125, (b, a) = 0.375; mean 25 %
    assert result["across"] == pytest.approx(25.0)
    assert result["within_cells"] == 2 and result["across_cells"] == 4


def test_abx_averages_contexts_before_speakers_and_pairs():
    features, items = _hand_example()
    # Add a second context in which s1's within cells are all correct (a and b far apart) -> (a,b) and (b,a) = 0.
    features["f3"] = np.array([_unit(0), _unit(5), _unit(90), _unit(95)], dtype=np.float32)
    items += [ItemRow("f3", 0.01 * k, 0.01 * k + 0.02, phone, "z", "z", "s1") for k, phone in enumerate("aabb")]
    # within: (a,b) = mean(0.5, 0) = 0.25, (b,a) = mean(0.75, 0) = 0.375 -> 31.25 %
    assert abx_error(features, items)["within"] == pytest.approx(31.25)


def test_identical_a_and_x_give_zero_error():
    rng = np.random.default_rng(0)
    prototypes = {phone: rng.standard_normal((4, 8)).astype(np.float32) for phone in "abcd"}
    features, items = {}, []
    for file_index in range(6):
        speaker = f"s{file_index % 3}"
        phones = rng.permutation(list("abcd")).tolist() * 2
        features[f"f{file_index}"] = np.concatenate([prototypes[p] for p in phones])
        for k, phone in enumerate(phones):
            items.append(ItemRow(f"f{file_index}", 0.04 * k, 0.04 * (k + 1), phone, "c", "c", speaker))
    result = abx_error(features, items)
    assert result["within"] == 0.0 and result["across"] == 0.0


def test_shuffled_labels_give_chance():
    rng = np.random.default_rng(1)
    features, items = {}, []
    for file_index in range(12):
        features[f"f{file_index}"] = rng.standard_normal((200, 16)).astype(np.float32)
        for k in range(40):
            items.append(
                ItemRow(
                    f"f{file_index}", 0.05 * k, 0.05 * (k + 1), str(rng.integers(4)), "c", "c", f"s{file_index % 4}"
                )
            )
    result = abx_error(features, items)
    assert abs(result["within"] - 50.0) < 5.0 and abs(result["across"] - 50.0) < 5.0


@pytest.mark.parametrize("threads, inside", [(None, 2), (1, 1)])
def test_abx_keeps_the_callers_thread_count_unless_asked(monkeypatch, threads, inside):
    from cpc.speech import abx

    seen = set()
    dtw = abx.dtw_average_cost
    monkeypatch.setattr(abx, "dtw_average_cost", lambda *args: seen.add(torch.get_num_threads()) or dtw(*args))
    features, items = _hand_example()
    torch.set_num_threads(2)  # the caller's setting
    assert abx_error(features, items, threads=threads)["within"] == pytest.approx(62.5)
    assert seen == {inside}
    assert torch.get_num_threads() == 2


def test_item_file_referencing_unknown_files_is_an_error():
    features, items = _hand_example()
    items.append(ItemRow("ghost", 0.0, 0.01, "a", "x", "y", "s1"))
    with pytest.raises(FeatureError, match="1 file.*ghost"):
        abx_error(features, items)


def test_cli_abx_on_a_tiny_corpus(tmp_path, capsys):
    import json

    from test_probes import _cli, write_labelled_corpus

    corpus = tmp_path / "corpus"
    write_labelled_corpus(corpus)
    out = tmp_path / "abx.json"
    assert _cli(["abx", "--features", "logmel", "--data", str(corpus), "--json", str(out), "--no-cache"]) == 0
    result = json.loads(out.read_text())
    assert result["within"] is not None and result["across"] is not None
    assert result["across"] < 40.0  # tones with distinct partials are easy to tell apart
    item = tmp_path / "bad.item"
    item.write_text("#file onset offset #phone prev-phone next-phone speaker\nnot-a-file 0.1 0.2 p1 p0 p2 100\n")
    assert (
        _cli(
            [
                "abx",
                "--features",
                "logmel",
                "--data",
                str(corpus),
                "--item",
                str(item),
                "--json",
                str(out),
                "--no-cache",
            ]
        )
        == 2
    )
    assert "not-a-file" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the ZeroSpeech reference


def test_across_averages_context_and_x_speaker_cells_together():
    from cpc.speech.abx import _average

    # Speaker s1, pair (a, b): X from s2 in contexts c1 and c2 (errors 1, 1), from s3 in c1 only (error 0). The reference
    # sums dimensions [3, 4] (context, X speaker) at once: 2 / 3. Contexts first, then X speakers, would give 1/2.
    scores = {
        ("s1", "a", "b", "c1", "s2"): [1.0],
        ("s1", "a", "b", "c2", "s2"): [1.0],
        ("s1", "a", "b", "c1", "s3"): [0.0],
    }
    assert _average(scores) == pytest.approx(100 * 2 / 3)
    # Then speakers, then phone pairs: (a, b) = mean(2/3, s4's 0) = 1/3; (b, a) = 1 -> 2/3.
    scores.update({("s4", "a", "b", "c1", "s1"): [0.0], ("s1", "b", "a", "c1", "s2"): [1.0]})
    assert _average(scores) == pytest.approx(100 * (1 / 3 + 1) / 2)
    assert _average({}) is None


def test_a_group_needs_two_tokens_per_draw():
    features, items = _hand_example()
    with pytest.raises(ValueError, match="max_per_group=1"):
        abx_error(features, items, max_per_group=1)


def generated_set() -> tuple[dict[str, np.ndarray], list[ItemRow]]:
    """12 files of 4 speakers, 3 phones in 4 contexts, tokens of 7 to 80 ms (some with no frame), groups larger than 3
    (the draws below), some all-zero frames, rows in shuffled order and file names out of numeric order (u10 < u2)."""
    rng = np.random.default_rng(7)
    prototypes = {phone: 1.5 * rng.standard_normal(6) for phone in "abc"}
    features, items = {}, []
    for index in range(12):
        name, speaker = f"u{index}", f"s{index % 4}"
        values = rng.standard_normal((160, 6)).astype(np.float32)
        time = 0.0
        while time < 1.5:
            duration = round(float(rng.uniform(0.007, 0.08)), 4)
            phone = str(rng.choice(list("abc")))
            start, stop = token_frames(time, time + duration, len(values))
            values[start:stop] += prototypes[phone].astype(np.float32)
            items.append(
                ItemRow(
                    name,
                    round(time, 4),
                    round(time + duration, 4),
                    phone,
                    str(rng.choice(list("xy"))),
                    str(rng.choice(list("xz"))),
                    speaker,
                )
            )
            time = round(time + duration, 4)
        values[rng.choice(len(values), 8, replace=False)] = 0.0
        features[name] = values
    return features, [items[i] for i in rng.permutation(len(items))]


GENERATED_OPTIONS = {"max_per_group": 3, "max_x_speakers": 2}
# The reference's scores (zerospeech-libriabx2 0.9.8, seed 3459) on generated_set() with these options, so that the
# protocol stays pinned where the package is not installed; test_abx_equals_the_reference recomputes them.
GENERATED_REFERENCE = {"within": 8.622686, "across": 8.063271}


def test_abx_on_the_generated_set_gives_the_references_scores():
    features, items = generated_set()
    result = abx_error(features, items, **GENERATED_OPTIONS)
    assert result["dropped_tokens"] > 0 and result["within_cells"] >= 30 and result["across_cells"] >= 30
    # 1e-6 here; 0.1 leaves room for a CPU whose float32 sums round otherwise and flip a near tie (one triplet moves a
    # score by about 0.06), and still catches each protocol detail (the smallest, the across averaging, moves it by 0.67).
    assert result["within"] == pytest.approx(GENERATED_REFERENCE["within"], abs=0.1)
    assert result["across"] == pytest.approx(GENERATED_REFERENCE["across"], abs=0.1)
    # The draws matter here (groups hold more than 3 tokens, rows more than 2 X speakers): another seed moves the scores.
    other = abx_error(features, items, **GENERATED_OPTIONS, seed=DEFAULT_SEED + 1)
    assert other["within"] != pytest.approx(result["within"], abs=1e-3) and other["across"] != pytest.approx(
        result["across"], abs=1e-3
    )


def test_abx_equals_the_reference(tmp_path):
    pytest.importorskip(
        "zrc_abx2", reason="the ZeroSpeech reference (pip install zerospeech-libriabx2) is not installed"
    )
    reference_abx = runpy.run_path(str(Path(__file__).parents[1] / "benchmarks" / "abx" / "compare_reference.py"))[
        "reference_abx"
    ]
    features, items = generated_set()
    item_path = tmp_path / "test.item"
    write_item(item_path, items)
    assert read_item(item_path) == items  # both read the same times
    ours = abx_error(features, items, **GENERATED_OPTIONS)
    reference = reference_abx(
        features,
        item_path,
        tmp_path / "features",
        max_size_group=GENERATED_OPTIONS["max_per_group"],
        max_x_across=GENERATED_OPTIONS["max_x_speakers"],
        seed=DEFAULT_SEED,
    )
    assert ours["within"] == pytest.approx(reference["within"], abs=1e-4)
    assert ours["across"] == pytest.approx(reference["across"], abs=1e-4)
    assert reference["within"] == pytest.approx(GENERATED_REFERENCE["within"], abs=1e-4)
    assert reference["across"] == pytest.approx(GENERATED_REFERENCE["across"], abs=1e-4)


def test_frame_distances_equal_the_references_to_the_bit():
    abx_groups = pytest.importorskip(
        "zrc_abx2.ABX_src.abx_group_computation", reason="zerospeech-libriabx2 is not installed"
    )
    from zrc_abx2.ABX_src.ABXDataset.abx_feature_loader import normalize_with_singularity

    generator = torch.Generator().manual_seed(0)
    frames = torch.randn(2, 7, 33, generator=generator) * 1e-3 + torch.randn(
        33, generator=generator
    )  # nearly parallel frames
    frames[0, 3] = 0.0
    first, second = normalize_with_singularity(frames[0].clone()), normalize_with_singularity(frames[1].clone())
    np.testing.assert_array_equal(unit_frames(frames[0]).numpy(), first.numpy())
    expected = abx_groups.get_cosine_distance_batch(first[None], second[None])[0, 0]  # (7, 7)
    np.testing.assert_array_equal(
        angular_distances(first[None], second[None], normalized=True)[0].numpy(), expected.numpy()
    )
    np.testing.assert_array_equal(angular_distances(frames[:1], frames[1:])[0].numpy(), expected.numpy())
