"""ZeroSpeech-style ABX phone discriminability, vectorised in torch.

Shape legend: P token pairs, N and M frames of the two tokens of a pair, D feature dimensions.

Protocol (ZeroSpeech 2017 track 1, Dunbar et al. 2017; ZeroSpeech 2021 / libri-light
``eval_ABX``, Nguyen et al. 2020; Kahn et al. 2020)
-------------------------------------------------------------------------------------
* Tokens come from an item file (``#file onset offset #phone prev-phone next-phone speaker``):
  the frames of ``file`` whose centres ((t + 0.5) × 10 ms) lie in [onset, offset] (at least the
  frame nearest the token's middle), as libri-light's ``ceil(100 onset − 0.5) .. floor(100 offset − 0.5)``.
* Distance between two tokens: frame-wise angular distance ``arccos(cos(x, y)) / π`` (0 for
  identical directions, 0.5 for orthogonal), aligned by DTW with steps (1,0), (0,1), (1,1); the
  cost of the best path is divided by its number of steps ("averaged along the path"). Ties
  between predecessors prefer the diagonal, then (1,0), then (0,1). Distances are symmetric by
  construction: each unordered pair is computed once.
* Groups are (context = (prev, next) phone, phone, speaker), each subsampled to at most
  ``max_per_group`` tokens with a fixed seed.
* Within speaker: for a context c, speaker s and phones a ≠ b, A and X are two different tokens
  of (c, a, s) and B a token of (c, b, s). Across speakers: A, B from speaker s, X a token of
  (c, a, s') for up to ``max_x_speakers`` other speakers s' (seeded choice).
* A triplet is an error when d(A, X) > d(B, X), half an error on a tie; a cell's score is the
  mean over its triplets. Scores are averaged over contexts, then over speakers (within: s;
  across: (s, s')), then over ordered phone pairs (a, b), and reported in percent.

Checks on the input
-------------------
* Item rows must lie inside their file: an onset before 0, or an offset more than
  ``tolerance`` frames (default 2 = 20 ms, rounding and conv arithmetic at the end) past the
  file's last frame, raises :class:`cpc.features.FeatureError` naming the row, its file and
  the value (``cpc abx`` checks against the audio before extracting features, and names the
  item file's line). Such rows are errors rather than clipped: a token moved to frame 0 or
  to the file's end is another token, scored silently.
* Few cells: a score averages cell scores, each in [0, 1]; with a handful of cells it moves in
  large steps (2 cells give 0, 25, 50, 75 or 100 %) and says little. The result counts the
  cells (``within_cells``, ``across_cells``), and below :data:`MIN_CELLS` (30) of a kind
  :func:`abx_error` logs a WARNING and adds it to the result's ``warnings``.

Vectorisation: every needed token pair is listed once, pairs are sorted by length and cut into
batches of bounded size; each batch gathers its frames with one index (``flat[offset + t]``),
computes all frame distances with one ``bmm`` and runs DTW over anti-diagonals (N + M steps
of (P, diagonal) tensor operations, not N × M Python steps). The cells are then scored from
the distance table with small numpy operations.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from cpc.features import FeatureError, torch_threads

__all__ = ["MIN_CELLS", "angular_distances", "dtw_average_cost", "token_frames", "check_item_times", "abx_error"]

log = logging.getLogger(__name__)

FRAMES_PER_SECOND = 100  # the 10 ms grid

MIN_CELLS = 30
"""Fewer (within or across) cells than this and :func:`abx_error` warns that its score is not a measurement.

With n cells the score is a mean of n numbers in [0, 1]; 30 is the usual rule of thumb for a
mean of that many to be stable to a few percent. The committed 6-minute sample gives a few
hundred; an item file with a couple of tokens per phone gives 2 and a score of 50.0 or 100.0.
"""


def angular_distances(first: Tensor, second: Tensor, *, normalized: bool = False) -> Tensor:
    """Frame-wise angular distance in [0, 1]: first (P, N, D), second (P, M, D) -> (P, N, M).

    Zero frames have no direction; they are treated as orthogonal to everything (distance 0.5).
    ``normalized=True`` skips the normalisation for rows that already have unit length.
    """
    if not normalized:
        first = torch.nn.functional.normalize(first, dim=-1, eps=1e-12)
        second = torch.nn.functional.normalize(second, dim=-1, eps=1e-12)
    cosine = torch.bmm(first, second.transpose(1, 2)).clamp(-1.0, 1.0)  # (P, N, M)
    return torch.arccos(cosine) / math.pi


def dtw_average_cost(distances: Tensor, first_lengths: Tensor, second_lengths: Tensor) -> Tensor:
    """DTW over padded frame distances (P, N, M) with valid lengths (P,), (P,) -> path-averaged cost (P,) float64.

    cost[i, j] = d[i, j] + min(cost[i-1, j-1], cost[i-1, j], cost[i, j-1]) (1-based, cost[0, 0] = 0);
    the result is cost[n, m] divided by the number of cells on that best path (ties: diagonal,
    then (1,0), then (0,1)). Cells past a pair's lengths hold anything: no valid cell depends on them.

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
            (costs[last, low - 1 : high], steps[last, low - 1 : high]),  # from (i-1, j)
            (costs[last, low : high + 1], steps[last, low : high + 1]),  # from (i, j-1)
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
    """Frames [start, stop) whose centres lie in [onset, offset] seconds; at least one frame."""
    start = max(0, math.ceil(FRAMES_PER_SECOND * onset - 0.5))
    stop = min(num_frames, math.floor(FRAMES_PER_SECOND * offset - 0.5) + 1)
    if stop <= start:
        middle = int(round(FRAMES_PER_SECOND * (onset + offset) / 2 - 0.5))
        start = min(max(middle, 0), num_frames - 1)
        stop = start + 1
    return start, stop


def check_item_times(items: Sequence, durations: dict[str, float], *, tolerance: float = 0.02, rows: str = "item",
                     line_numbers: Sequence[int] | None = None) -> None:
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
            problems.append(f"{where}: offset {row.offset:g} s is past the end of {row.file} ({durations[row.file]:g} s)")
    if problems:
        more = f" ... ({len(problems)} rows in all)" if len(problems) > 5 else ""
        raise FeatureError(f"{len(problems)} ABX item row(s) outside their file: " + "; ".join(problems[:5]) + more)


@dataclass
class _Tokens:
    """Subsampled tokens: frames of token k are flat[offsets[k] : offsets[k] + lengths[k]]."""

    flat: Tensor  # (total frames, D), unit-length rows
    offsets: Tensor  # (K,)
    lengths: Tensor  # (K,)
    groups: dict[tuple, list[int]]  # (context, phone, speaker) -> token indices


def _tokens(features: dict[str, np.ndarray], items: Sequence, max_per_group: int, rng: np.random.Generator) -> _Tokens:
    by_group: dict[tuple, list] = defaultdict(list)
    for row in items:
        by_group[((row.prev_phone, row.next_phone), row.phone, row.speaker)].append(row)
    pieces, offsets, lengths, groups, total = [], [], [], {}, 0
    for key in sorted(by_group):
        rows = by_group[key]
        if len(rows) > max_per_group:
            rows = [rows[i] for i in sorted(rng.choice(len(rows), max_per_group, replace=False))]
        groups[key] = []
        for row in rows:
            values = features[row.file]
            start, stop = token_frames(row.onset, row.offset, len(values))
            groups[key].append(len(offsets))
            pieces.append(torch.from_numpy(np.asarray(values[start:stop], dtype=np.float32)))
            offsets.append(total)
            lengths.append(stop - start)
            total += stop - start
    flat = torch.nn.functional.normalize(torch.cat(pieces), dim=-1, eps=1e-12)
    return _Tokens(flat, torch.tensor(offsets), torch.tensor(lengths), groups)


def _pair_distances(tokens: _Tokens, pairs: list[tuple[int, int]], max_cells: int) -> dict[tuple[int, int], float]:
    """DTW distance for each (u, v) token pair, batched by length.

    Each pair is computed with its longer token as rows; pairs are bucketed by that length and
    cut into batches of at most ``max_cells`` DTW cells, so padding stays small.
    """
    if not pairs:
        return {}
    pair_tensor = torch.tensor(pairs)  # (P, 2)
    lengths = tokens.lengths[pair_tensor]  # (P, 2)
    swap = lengths[:, 1] > lengths[:, 0]
    rows_token = torch.where(swap, pair_tensor[:, 1], pair_tensor[:, 0])
    columns_token = torch.where(swap, pair_tensor[:, 0], pair_tensor[:, 1])
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
            second_index = tokens.offsets[second][:, None] + torch.minimum(torch.arange(columns)[None], (m - 1)[:, None])
            distances = angular_distances(tokens.flat[first_index], tokens.flat[second_index], normalized=True)  # (P, N, M)
            values[batch] = dtw_average_cost(distances, n, m)
            start = stop
    return dict(zip(pairs, values.tolist()))


def _score(a_x: np.ndarray, b_x: np.ndarray, exclude_same: bool) -> float:
    """Mean error over triplets: a_x (|A|, |X|) = d(A_i, X_k), b_x (|B|, |X|) = d(B_j, X_k).

    Triplet (i, j, k) errs when d(A_i, X_k) > d(B_j, X_k) (half on a tie); ``exclude_same`` drops
    i == k (within speaker, A and X are drawn from one group and must be different tokens).
    """
    comparison = a_x[:, None, :] - b_x[None, :, :]  # (|A|, |B|, |X|)
    errors = (comparison > 0) + 0.5 * (comparison == 0)
    if exclude_same:
        keep = ~np.eye(a_x.shape[0], a_x.shape[1], dtype=bool)[:, None, :]
        return float((errors * keep).sum() / (keep.sum() * b_x.shape[0]))
    return float(errors.mean())


def abx_error(
    features: dict[str, np.ndarray],
    items: Sequence,
    *,
    max_per_group: int = 10,
    max_x_speakers: int = 5,
    seed: int = 0,
    max_cells: int = 4_000_000,
    tolerance: int = 2,
    threads: int | None = None,
) -> dict:
    """Within- and across-speaker ABX error (%) of per-file features {file: (T, D)} on item rows.

    ``items``: rows with ``file, onset, offset, phone, prev_phone, next_phone, speaker``
    (:func:`cpc.corpus.formats.read_item`). ``threads``: torch intra-op threads for the DTW
    (None: leave the caller's setting). ``max_x_speakers=0`` scores within speaker only.
    Raises :class:`FeatureError` listing item files with no features, or rows outside their
    file (by more than ``tolerance`` frames at the end; see the module docstring). Returns
    ``{"within", "across", "within_cells", "across_cells", ..., "warnings"}``; a score is None
    when the items allow no triplet of that kind (e.g. one speaker only), and ``warnings``
    says when a score rests on fewer than :data:`MIN_CELLS` cells.
    """
    if max_per_group < 1:
        raise ValueError(f"max_per_group={max_per_group}: expected at least 1 token per (context, phone, speaker) group")
    if max_x_speakers < 0:
        raise ValueError(f"max_x_speakers={max_x_speakers}: expected 0 (within speaker only) or more")
    if not items:
        raise FeatureError("no ABX item rows to score")
    missing = sorted({row.file for row in items} - features.keys())
    if missing:
        shown = ", ".join(missing[:10]) + (f" ... ({len(missing)} in all)" if len(missing) > 10 else "")
        raise FeatureError(f"the item file references {len(missing)} file(s) with no features (not in the corpus or split): {shown}")
    check_item_times(items, {file: len(values) / FRAMES_PER_SECOND for file, values in features.items()}, tolerance=tolerance / FRAMES_PER_SECOND)
    rng = np.random.default_rng(seed)
    tokens = _tokens(features, items, max_per_group, rng)
    by_context: dict[tuple, dict[tuple, list[int]]] = defaultdict(dict)  # context -> (phone, speaker) -> tokens
    for (context, phone, speaker), members in tokens.groups.items():
        by_context[context][(phone, speaker)] = members

    # --- list the cells and the token pairs they need
    within_cells, across_cells, needed = [], [], set()

    def need(first: list[int], second: list[int]) -> None:
        needed.update((min(u, v), max(u, v)) for u in first for v in second if u != v)

    for context in sorted(by_context):
        groups = by_context[context]
        speakers_of: dict[str, list[str]] = defaultdict(list)  # phone -> speakers with tokens
        for phone, speaker in sorted(groups):
            speakers_of[phone].append(speaker)
        for (phone_a, speaker), a_tokens in sorted(groups.items()):
            others = [phone for phone in sorted(speakers_of) if phone != phone_a and (phone, speaker) in groups]
            x_speakers = [s for s in speakers_of[phone_a] if s != speaker]
            if len(x_speakers) > max_x_speakers:
                x_speakers = [x_speakers[i] for i in sorted(rng.choice(len(x_speakers), max_x_speakers, replace=False))]
            for phone_b in others:
                b_tokens = groups[(phone_b, speaker)]
                if len(a_tokens) >= 2:
                    within_cells.append((context, speaker, phone_a, phone_b, a_tokens, b_tokens))
                    need(a_tokens, a_tokens)
                    need(b_tokens, a_tokens)
                for x_speaker in x_speakers:
                    x_tokens = groups[(phone_a, x_speaker)]
                    across_cells.append((context, (speaker, x_speaker), phone_a, phone_b, a_tokens, b_tokens, x_tokens))
                    need(a_tokens, x_tokens)
                    need(b_tokens, x_tokens)

    with torch_threads(threads):
        distance = _pair_distances(tokens, sorted(needed), max_cells)

    def table(first: list[int], second: list[int]) -> np.ndarray:
        return np.array([[0.0 if u == v else distance[(min(u, v), max(u, v))] for v in second] for u in first])

    # --- score cells, then average over contexts, speakers, phone pairs
    def aggregate(scores: dict[tuple, list[float]]) -> float | None:
        """scores: (phone_a, phone_b, speakers) -> per-context cell scores."""
        by_pair: dict[tuple, list[float]] = defaultdict(list)
        for (phone_a, phone_b, _), values in scores.items():
            by_pair[(phone_a, phone_b)].append(float(np.mean(values)))  # mean over contexts
        if not by_pair:
            return None
        return 100.0 * float(np.mean([np.mean(values) for values in by_pair.values()]))  # speakers, then pairs

    within_scores: dict[tuple, list[float]] = defaultdict(list)
    for context, speaker, phone_a, phone_b, a_tokens, b_tokens in within_cells:
        within_scores[(phone_a, phone_b, speaker)].append(_score(table(a_tokens, a_tokens), table(b_tokens, a_tokens), exclude_same=True))
    across_scores: dict[tuple, list[float]] = defaultdict(list)
    for context, speakers, phone_a, phone_b, a_tokens, b_tokens, x_tokens in across_cells:
        across_scores[(phone_a, phone_b, speakers)].append(_score(table(a_tokens, x_tokens), table(b_tokens, x_tokens), exclude_same=False))

    warnings = []
    for kind, count in (("within", len(within_cells)), ("across", len(across_cells))):
        if kind == "across" and max_x_speakers == 0:
            continue
        if count == 0:
            warnings.append(f"no {kind}-speaker cells: the items allow no {kind}-speaker triplet, the {kind} score is None")
        elif count < MIN_CELLS:
            warnings.append(f"the {kind}-speaker score rests on {count} cell(s) only (fewer than {MIN_CELLS}): not a meaningful measurement")
    for warning in warnings:
        log.warning("ABX: %s", warning)
    return {
        "within": aggregate(within_scores),
        "across": aggregate(across_scores),
        "items": len(items),
        "tokens": len(tokens.lengths),
        "token_pairs": len(needed),
        "within_cells": len(within_cells),
        "across_cells": len(across_cells),
        "max_per_group": max_per_group,
        "max_x_speakers": max_x_speakers,
        "seed": seed,
        "min_cells": MIN_CELLS,
        "warnings": warnings,
    }
