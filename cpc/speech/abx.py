"""ZeroSpeech-style ABX phone discriminability, vectorised in torch, equal to the ZeroSpeech reference.

Shape legend: P token pairs, N and M frames of the two tokens of a pair, D feature dimensions.

:func:`abx_error` follows the reference, ``zrc_abx2`` (PyPI ``zerospeech-libriabx2`` 0.9.8,
within-context condition, cosine distance, ``max_size_group=10``, ``max_x_across=5``, seed 3459),
step by step, so both give the same within/across scores to float rounding:
``tests/test_abx.py`` checks this when the package is installed, and
``benchmarks/abx/compare_reference.py`` on a corpus. docs/abx.md gives each step (token frames,
distance and DTW ties, sampling, averaging) with the reference's code quoted, and the input
checks where we differ on purpose.

Vectorisation: every needed (rows, columns) token pair is listed once, pairs are sorted by
length and cut into batches of bounded size; each batch gathers its frames with one index
(``flat[offset + t]``), computes all frame distances with a few broadcast products and runs
DTW over anti-diagonals (N + M steps of (P, diagonal) tensor operations, not N × M Python
steps). The cells are then scored from the distance table with small numpy operations.
"""

from __future__ import annotations

import logging
import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cpc.errors import FeatureError
from cpc.runtime import torch_threads

__all__ = [
    "DEFAULT_SEED",
    "MIN_CELLS",
    "unit_frames",
    "angular_distances",
    "dtw_average_cost",
    "token_frames",
    "check_item_times",
    "abx_error",
]

log = logging.getLogger(__name__)

FRAMES_PER_SECOND = 100  # the 10 ms grid (the reference's stepFeature = 1 / feature_size)

DEFAULT_SEED = 3459
"""The reference's ``SEED``: with it (and files in name order) :func:`abx_error` draws the reference's samples."""

MIN_CELLS = 30
"""Fewer (within or across) cells than this and :func:`abx_error` warns that its score is not a measurement.

With n cells the score is a mean of n numbers in [0, 1]; 30 is the usual rule of thumb for a
mean of that many to be stable to a few percent. The committed 6-minute sample gives a few
hundred; an item file with a couple of tokens per phone gives 2 and a score of 50.0 or 100.0.
"""


def unit_frames(frames: Tensor) -> Tensor:
    """Frames (T, D) -> (T, D + 1) of unit length, the reference's ``normalize_with_singularity``, to the bit.

    Each frame is divided by ``sqrt(sum x²)`` and extended by 1e-12; an all-zero frame becomes
    (1/√D, ..., 1/√D, -2·10¹²), whose dot product with any extended unit frame is below -1: it
    lies at distance 1 from every non-zero frame and 0 from another zero frame.
    """
    if frames.dim() != 2:
        raise ValueError(f"expected frames of shape (T, D), got {tuple(frames.shape)}")
    squared = (frames**2).sum(dim=1, keepdim=True)  # (T, 1)
    zero = squared[:, 0] == 0
    unit = frames / torch.sqrt(squared)
    unit[zero] = 1 / math.sqrt(frames.shape[1])
    border = torch.zeros((len(frames), 1), dtype=frames.dtype) + 1e-12
    border[zero] = -2 * 1e12
    return torch.cat([unit, border], dim=1)  # (T, D + 1)


def angular_distances(first: Tensor, second: Tensor, *, normalized: bool = False, max_elements: int = 2**20) -> Tensor:
    """Frame-wise angular distance in [0, 1]: first (P, N, D), second (P, M, D) -> (P, N, M).

    ``arccos(clamp(x·y, -1, 1)) / π`` of :func:`unit_frames`, so an all-zero frame is at distance
    1 from every other frame and 0 from a zero frame. ``normalized=True``: the rows already come
    from :func:`unit_frames` (D + 1 columns). The dot products are summed as the reference sums
    them (``(x * y).sum(-1)`` over a (P, N, M, D) product, not a ``bmm``, whose other order of
    additions rounds differently and turns ties of nearly parallel frames into wins or losses),
    in chunks of at most ``max_elements`` products (4 MB: cache-sized chunks ran 9 times faster
    than 64 MB ones; the whole is about 4 times a ``bmm``'s time).
    """
    if first.dim() != 3 or second.dim() != 3 or first.shape[0] != second.shape[0] or first.shape[2] != second.shape[2]:
        raise ValueError(
            f"expected first (P, N, D) and second (P, M, D), got {tuple(first.shape)} and {tuple(second.shape)}"
        )
    pairs, rows, dimensions = first.shape
    if not normalized:
        first = unit_frames(first.reshape(-1, dimensions)).reshape(pairs, rows, -1)
        second = unit_frames(second.reshape(-1, dimensions)).reshape(pairs, second.shape[1], -1)
    columns = second.shape[1]
    cosine = torch.empty((pairs, rows, columns), dtype=first.dtype)
    chunk = max(1, max_elements // max(1, rows * columns * first.shape[2]))
    for start in range(0, pairs, chunk):
        products = first[start : start + chunk, :, None, :] * second[start : start + chunk, None, :, :]  # (p, N, M, D)
        cosine[start : start + chunk] = products.sum(dim=-1)
    return torch.clamp(cosine, -1, 1).acos() / math.pi


def dtw_average_cost(distances: Tensor, first_lengths: Tensor, second_lengths: Tensor) -> Tensor:
    """DTW over padded frame distances (P, N, M) with valid lengths (P,), (P,) -> path-averaged cost (P,) float64.

    cost[i, j] = d[i, j] + min(cost[i-1, j-1], cost[i, j-1], cost[i-1, j]) (1-based, cost[0, 0] = 0);
    the result is cost[n, m] divided by the number of cells on that best path (ties: diagonal,
    then (0,1), then (1,0), the reference's order). Costs add up in the dtype of ``distances``
    (float32 in :func:`abx_error`, as the reference). Cells past a pair's lengths hold
    anything: no valid cell depends on them.

    The recursion runs over anti-diagonals i + j = const: every cell of one depends only on the
    two before it, so each step is a few (P, diagonal length) operations on contiguous slices.
    Diagonal vectors are indexed by the 1-based row i (index 0 is the virtual row 0).
    """
    if distances.dim() != 3:
        raise ValueError(f"expected distances of shape (P, N, M), got {tuple(distances.shape)}")
    pairs, rows, columns = distances.shape
    if pairs == 0:
        return torch.zeros(0, dtype=torch.float64)
    # Layout (row, column, pair) so that a diagonal's cells for all pairs are contiguous rows.
    local_costs = distances.permute(1, 2, 0).contiguous()  # (N, M, P)
    # Three rotating diagonal buffers (d - 2, d - 1, d), each (N + 1, P), indexed by the 1-based row i.
    costs = torch.full((3, rows + 1, pairs), math.inf, dtype=distances.dtype)
    steps = torch.zeros((3, rows + 1, pairs), dtype=torch.long)
    costs[0, 0] = 0.0  # diagonal 0 holds only cell (0, 0)
    result = torch.zeros(pairs, dtype=torch.float64)
    ends = first_lengths + second_lengths  # the diagonal of each pair's final cell
    for diagonal in range(2, rows + columns + 1):
        before, last, now = (diagonal - 2) % 3, (diagonal - 1) % 3, diagonal % 3
        low, high = max(1, diagonal - columns), min(rows, diagonal - 1)  # rows i on this diagonal
        i = torch.arange(low, high + 1)
        local = local_costs[i - 1, diagonal - i - 1]  # (L, P): 0-based cells (i - 1, j - 1)
        best, best_steps = costs[before, low - 1 : high], steps[before, low - 1 : high]  # from (i-1, j-1)
        for candidate, candidate_steps in (
            (costs[last, low : high + 1], steps[last, low : high + 1]),  # from (i, j-1)
            (costs[last, low - 1 : high], steps[last, low - 1 : high]),  # from (i-1, j)
        ):
            better = candidate < best  # strict: ties keep the earlier candidate
            best = torch.where(better, candidate, best)
            best_steps = torch.where(better, candidate_steps, best_steps)
        costs[now].fill_(math.inf)
        costs[now, low : high + 1] = local + best
        steps[now, low : high + 1] = best_steps + 1
        finished = (ends == diagonal).nonzero()[:, 0]
        if len(finished):
            rows_finished = first_lengths[finished]
            result[finished] = costs[now, rows_finished, finished].double() / steps[now, rows_finished, finished]
    return result


def token_frames(onset: float, offset: float, num_frames: int) -> tuple[int, int]:
    """Frames [start, stop) of a token, the reference's rounding: empty (stop <= start) when it has none.

    start = ceil(100 onset - 0.5), the first frame whose centre is at or after the onset;
    stop = floor(100 offset - 0.5), the last frame whose centre is at or before the offset,
    itself left out; both clipped to [0, num_frames].
    """
    start = max(0, math.ceil(FRAMES_PER_SECOND * onset - 0.5))
    stop = min(num_frames, math.floor(FRAMES_PER_SECOND * offset - 0.5))
    return start, stop


def check_item_times(
    items: Sequence,
    durations: dict[str, float],
    *,
    tolerance: float = 0.02,
    rows: str = "item",
    line_numbers: Sequence[int] | None = None,
) -> None:
    """Reject item rows that do not lie inside their file: onset before 0, or offset more than ``tolerance`` s past its end.

    ``durations``: {file: seconds}; files not in it are not checked. ``rows`` names the rows in
    the message (e.g. the item file's path) and ``line_numbers`` (one per row) their lines; by
    default rows are numbered from 1. Raises :class:`FeatureError` listing the first bad rows.
    """
    problems = []
    for index, row in enumerate(items):
        where = f"{rows}:{line_numbers[index]}" if line_numbers is not None else f"{rows} row {index + 1}"
        if row.onset < 0:
            problems.append(f"{where}: onset {row.onset:g} s is before the start of {row.file}")
        elif row.file in durations and row.offset > durations[row.file] + tolerance:
            problems.append(
                f"{where}: offset {row.offset:g} s is past the end of {row.file} ({durations[row.file]:g} s)"
            )
    if problems:
        more = f" ... ({len(problems)} rows in all)" if len(problems) > 5 else ""
        raise FeatureError(f"{len(problems)} ABX item row(s) outside their file: " + "; ".join(problems[:5]) + more)


@dataclass
class _Tokens:
    """Tokens with frames: frames of token k are flat[offsets[k] : offsets[k] + lengths[k]].

    ``groups[context][speaker][phone]`` lists a group's tokens; every level is a dict in the
    order of the reference's ids (first appearance in the item file), tokens in file-name order
    then item order.
    """

    flat: Tensor  # (total frames, D + 1), rows of unit_frames
    offsets: Tensor  # (K,)
    lengths: Tensor  # (K,)
    groups: dict[str, dict[str, dict[str, list[int]]]]
    dropped: int  # item rows with no frame


def _tokens(features: dict[str, np.ndarray], items: Sequence) -> _Tokens:
    # Ids by first appearance: the order in which the reference visits contexts, speakers and phones.
    ids: list[dict] = [{}, {}, {}]
    for row in items:
        for level, name in zip(ids, ((row.prev_phone, row.next_phone), row.speaker, row.phone)):
            level.setdefault(name, len(level))
    by_file: dict[str, list] = defaultdict(list)
    for row in items:
        by_file[row.file].append(row)
    pieces, offsets, lengths, members, total, dropped = [], [], [], defaultdict(list), 0, 0
    for file in sorted(by_file):
        values = features[file]
        for row in by_file[file]:
            start, stop = token_frames(row.onset, row.offset, len(values))
            if stop <= start:
                dropped += 1
                continue
            members[((row.prev_phone, row.next_phone), row.speaker, row.phone)].append(len(offsets))
            pieces.append(torch.from_numpy(np.asarray(values[start:stop], dtype=np.float32)))
            offsets.append(total)
            lengths.append(stop - start)
            total += stop - start
    if not pieces:
        raise FeatureError(
            f"none of the {len(items)} ABX item rows covers a frame (a token needs two frame centres inside it)"
        )
    groups: dict = {}
    for key in sorted(members, key=lambda key: [level[name] for level, name in zip(ids, key)]):
        context, speaker, phone = key
        groups.setdefault(context, {}).setdefault(speaker, {})[phone] = members[key]
    return _Tokens(unit_frames(torch.cat(pieces)), torch.tensor(offsets), torch.tensor(lengths), groups, dropped)


def _within_cells(tokens: _Tokens, max_per_group: int, rng: random.Random) -> list[tuple]:
    """Within-speaker cells ((speaker, a, b, context), A, B), X = A, drawn in the reference's order."""

    def sample(group: list[int]) -> list[int]:
        return rng.sample(group, max_per_group) if len(group) > max_per_group else group

    cells = []
    for context, by_speaker in tokens.groups.items():
        for speaker, by_phone in by_speaker.items():
            for phone_a, a_group in by_phone.items():
                if len(by_phone) == 1 or len(a_group) == 1:
                    continue
                for phone_b, b_group in by_phone.items():
                    if phone_b != phone_a:
                        b_tokens = sample(b_group)  # B is drawn before A
                        cells.append(((speaker, phone_a, phone_b, context), sample(a_group), b_tokens))
    return cells


def _across_cells(tokens: _Tokens, max_per_group: int, max_x_speakers: int, rng: random.Random) -> list[tuple]:
    """Across-speaker cells ((speaker, a, b, context, x_speaker), A, B, X), drawn in the reference's order."""

    def sample(group: list[int]) -> list[int]:
        return rng.sample(group, max_per_group) if len(group) > max_per_group else group

    cells = []
    for context, by_speaker in tokens.groups.items():
        for speaker, by_phone in by_speaker.items():
            if len(by_phone) == 1:
                continue
            for phone_a, a_group in by_phone.items():
                others = [
                    (other, groups[phone_a])
                    for other, groups in by_speaker.items()
                    if other != speaker and phone_a in groups
                ]
                if len(others) > max_x_speakers:
                    others = rng.sample(others, max_x_speakers)
                for x_speaker, x_group in others:
                    for phone_b, b_group in by_phone.items():
                        if phone_b != phone_a:
                            a_tokens, b_tokens = sample(a_group), sample(b_group)
                            cells.append(
                                ((speaker, phone_a, phone_b, context, x_speaker), a_tokens, b_tokens, sample(x_group))
                            )
    return cells


def _pair_distances(tokens: _Tokens, pairs: list[tuple[int, int]], max_cells: int) -> dict[tuple[int, int], float]:
    """DTW distance for each (rows, columns) token pair, batched by length; values rounded to float32 as the reference's.

    Pairs are bucketed by their row token's length and cut into batches of at most
    ``max_cells`` DTW cells, so padding stays small.
    """
    if not pairs:
        return {}
    pair_tensor = torch.tensor(pairs)  # (P, 2)
    rows_token, columns_token = pair_tensor[:, 0], pair_tensor[:, 1]
    row_lengths, column_lengths = tokens.lengths[rows_token], tokens.lengths[columns_token]
    order = torch.argsort(row_lengths * (int(column_lengths.max()) + 1) + column_lengths)
    values = torch.empty(len(pairs), dtype=torch.float64)
    sorted_rows = row_lengths[order]
    bucket_ends = torch.cumsum(torch.unique_consecutive(sorted_rows, return_counts=True)[1], 0).tolist()
    start = 0
    for bucket_end in bucket_ends:
        while start < bucket_end:
            rows = int(sorted_rows[start])
            columns = int(column_lengths[order[bucket_end - 1]])  # the bucket's longest column token
            stop = min(bucket_end, start + max(1, max_cells // (rows * columns)))
            batch = order[start:stop]
            first, second = rows_token[batch], columns_token[batch]
            n, m = row_lengths[batch], column_lengths[batch]
            columns = int(m.max())
            # Gather frames: row p, frame t -> flat[offset + min(t, length - 1)] (padding repeats the last frame).
            first_index = tokens.offsets[first][:, None] + torch.arange(rows)[None]
            second_index = tokens.offsets[second][:, None] + torch.minimum(
                torch.arange(columns)[None], (m - 1)[:, None]
            )
            distances = angular_distances(
                tokens.flat[first_index], tokens.flat[second_index], normalized=True
            )  # (P, N, M)
            values[batch] = dtw_average_cost(distances, n, m).float().double()  # the reference stores float32
            start = stop
    return dict(zip(pairs, values.tolist()))


def _score(x_a: np.ndarray, x_b: np.ndarray, exclude_same: bool) -> float:
    """Mean error over triplets: x_a (|X|, |A|) = d(X_k, A_i), x_b (|X|, |B|) = d(X_k, B_j).

    Triplet (k, i, j) errs when d(X_k, A_i) > d(X_k, B_j) (half on a tie); ``exclude_same`` drops
    i == k (within speaker, X and A are the same sample and must be different tokens).
    """
    comparison = x_a[:, :, None] - x_b[:, None, :]  # (|X|, |A|, |B|)
    errors = (comparison > 0) + 0.5 * (comparison == 0)
    if exclude_same:
        keep = ~np.eye(x_a.shape[0], x_a.shape[1], dtype=bool)[:, :, None]
        return float((errors * keep).sum() / (keep.sum() * x_b.shape[1]))
    return float(errors.mean())


def _average(scores: dict[tuple, list[float]]) -> float | None:
    """Cell scores keyed (speaker, a, b, *rest) -> percent: mean over ``rest`` for each (speaker, a, b), then over speakers, then (a, b).

    Within, ``rest`` is (context,); across, (context, X speaker): the reference averages all
    cells of one (speaker, a, b) at once, whatever their context and X speaker.
    """
    by_speaker: dict[tuple, list[float]] = defaultdict(list)
    for (speaker, phone_a, phone_b, *_), values in scores.items():
        by_speaker[(speaker, phone_a, phone_b)].extend(values)
    by_pair: dict[tuple, list[float]] = defaultdict(list)
    for (_, phone_a, phone_b), values in by_speaker.items():
        by_pair[(phone_a, phone_b)].append(float(np.mean(values)))
    if not by_pair:
        return None
    return 100.0 * float(np.mean([np.mean(values) for values in by_pair.values()]))


def _check_arguments(
    features: dict[str, np.ndarray], items: Sequence, max_per_group: int, max_x_speakers: int, tolerance: int
) -> None:
    """abx_error's arguments: ValueError for bad counts, FeatureError for items without features or outside their file."""
    if max_per_group < 2:
        raise ValueError(
            f"max_per_group={max_per_group}: expected at least 2 tokens per (context, phone, speaker) group"
        )
    if max_x_speakers < 0:
        raise ValueError(f"max_x_speakers={max_x_speakers}: expected 0 (within speaker only) or more")
    if not items:
        raise FeatureError("no ABX item rows to score")
    missing = sorted({row.file for row in items} - features.keys())
    if missing:
        shown = ", ".join(missing[:10]) + (f" ... ({len(missing)} in all)" if len(missing) > 10 else "")
        raise FeatureError(
            f"the item file references {len(missing)} file(s) with no features (not in the corpus or split): {shown}"
        )
    check_item_times(
        items,
        {file: len(values) / FRAMES_PER_SECOND for file, values in features.items()},
        tolerance=tolerance / FRAMES_PER_SECOND,
    )


def _needed_pairs(within_cells: list, across_cells: list) -> set[tuple[int, int]]:
    """The (rows, columns) token pairs the cells need, in the reference's orientation."""
    needed: set[tuple[int, int]] = set()
    for _, a_tokens, b_tokens in within_cells:
        needed.update(
            (u, v) for i, u in enumerate(a_tokens) for v in a_tokens[i + 1 :]
        )  # A x A once, earlier on the rows
        needed.update((x, v) for x in a_tokens for v in b_tokens)
    for _, a_tokens, b_tokens, x_tokens in across_cells:
        needed.update((x, v) for x in x_tokens for v in a_tokens + b_tokens)
    return needed


def _cell_scores(distance: dict[tuple[int, int], float], within_cells: list, across_cells: list) -> tuple[dict, dict]:
    """Each cell's score from the pair distances -> ({key: [scores]} within, {key: [scores]} across)."""

    def table(rows: list[int], columns: list[int]) -> np.ndarray:
        return np.array([[distance[(u, v)] for v in columns] for u in rows])

    def symmetric_table(sample: list[int]) -> np.ndarray:
        values = np.zeros((len(sample), len(sample)))  # the diagonal is left out of the score
        for i, u in enumerate(sample):
            for j in range(i + 1, len(sample)):
                values[i, j] = values[j, i] = distance[(u, sample[j])]
        return values

    within_scores: dict[tuple, list[float]] = defaultdict(list)
    for key, a_tokens, b_tokens in within_cells:
        within_scores[key].append(_score(symmetric_table(a_tokens), table(a_tokens, b_tokens), exclude_same=True))
    across_scores: dict[tuple, list[float]] = defaultdict(list)
    for key, a_tokens, b_tokens, x_tokens in across_cells:
        across_scores[key].append(_score(table(x_tokens, a_tokens), table(x_tokens, b_tokens), exclude_same=False))
    return within_scores, across_scores


def _cell_warnings(within: int, across: int, max_x_speakers: int) -> list[str]:
    """What to say when a score rests on no cell, or on fewer than MIN_CELLS (also logged)."""
    warnings = []
    for kind, count in (("within", within), ("across", across)):
        if kind == "across" and max_x_speakers == 0:
            continue
        if count == 0:
            warnings.append(
                f"no {kind}-speaker cells: the items allow no {kind}-speaker triplet, the {kind} score is None"
            )
        elif count < MIN_CELLS:
            warnings.append(
                f"the {kind}-speaker score rests on {count} cell(s) only (fewer than {MIN_CELLS}): not a meaningful measurement"
            )
    for warning in warnings:
        log.warning("ABX: %s", warning)
    return warnings


def abx_error(
    features: dict[str, np.ndarray],
    items: Sequence,
    *,
    max_per_group: int = 10,
    max_x_speakers: int = 5,
    seed: int = DEFAULT_SEED,
    max_cells: int = 4_000_000,
    tolerance: int = 2,
    threads: int | None = None,
) -> dict:
    """Within- and across-speaker ABX error (%) of per-file features {file: (T, D)} on item rows (within context).

    ``items``: rows with ``file, onset, offset, phone, prev_phone, next_phone, speaker``
    (:func:`cpc.speech.corpus.formats.read_item`), in item-file order (it sets the order of the draws).
    ``max_per_group``, ``max_x_speakers`` and ``seed`` are the reference's ``max_size_group``,
    ``max_x_across`` and ``seed`` (see docs/abx.md); ``max_x_speakers=0`` scores within
    speaker only. ``threads``: torch intra-op threads for the DTW (None: leave the caller's
    setting). Raises :class:`FeatureError` listing item files with no features, or rows outside
    their file (by more than ``tolerance`` frames at the end). Returns ``{"within", "across",
    "within_cells", "across_cells", "dropped_tokens", ..., "warnings"}``; a score is None when
    the items allow no triplet of that kind (e.g. one speaker only), and ``warnings`` says when
    a score rests on fewer than :data:`MIN_CELLS` cells.
    """
    _check_arguments(features, items, max_per_group, max_x_speakers, tolerance)
    tokens = _tokens(features, items)
    # Two iterators, each seeded afresh, as the reference's.
    within_cells = _within_cells(tokens, max_per_group, random.Random(seed))
    across_cells = _across_cells(tokens, max_per_group, max_x_speakers, random.Random(seed)) if max_x_speakers else []
    needed = _needed_pairs(within_cells, across_cells)
    with torch_threads(threads):
        distance = _pair_distances(tokens, sorted(needed), max_cells)
    within_scores, across_scores = _cell_scores(distance, within_cells, across_cells)
    if tokens.dropped:
        log.info(
            "ABX: %d of %d item rows cover no frame and are left out, as in the reference", tokens.dropped, len(items)
        )
    warnings = _cell_warnings(len(within_cells), len(across_cells), max_x_speakers)
    return {
        "within": _average(within_scores),
        "across": _average(across_scores),
        "items": len(items),
        "tokens": len(tokens.lengths),
        "dropped_tokens": tokens.dropped,
        "token_pairs": len(needed),
        "within_cells": len(within_cells),
        "across_cells": len(across_cells),
        "max_per_group": max_per_group,
        "max_x_speakers": max_x_speakers,
        "seed": seed,
        "min_cells": MIN_CELLS,
        "warnings": warnings,
    }
