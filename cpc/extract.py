"""Write a corpus' CPC features to disk (``cpc extract``): one .npy per utterance, or a Kaldi ark/scp.

    cpc extract CHECKPOINT --data DIR|MANIFEST --out DIR [--layer context|encoder] [--format npy|kaldi]
                [--batch-seconds S] [--device cpu|cuda] [--threads N] [--no-progress]

Shape legend: S samples (16 kHz), T frames (``model.downsample_rate`` samples each), D feature
dimensions (C for ``--layer encoder`` = z_t, H for ``--layer context`` = c_t).

Input is anything :func:`cpc.speech.audio.list_audio` reads (LibriSpeech layout, flat folder, TSV
manifest), read and resampled to 16 kHz as for training (:func:`cpc.speech.audio.read_audio`).
The utterance id is the file name without its extension; two files with the same id are an
error naming them.

Output (``--out DIR``):

    npy      <utt>.npy           (T, D) float32, one per utterance
             index.tsv           utterance<TAB>frames<TAB>path (relative to DIR), sorted by id when complete
    kaldi    feats.ark           Kaldi binary float matrices (kaldiio), key = utterance id
             feats.scp           <utt> <absolute path of feats.ark>:<offset>, sorted by id when complete
    both     extract.json        model, layer, frame rate, counts, unreadable files, seconds, real-time factor

T is exact: ``model.output_lengths(S)`` of the utterance's own length. Utterances are batched
by length (at most ``--batch-seconds`` of padded audio per forward pass); the encoder carries
valid lengths and the context network is causal, so padding changes no valid frame, and padded
frames are dropped.

Resume: rerunning the same command skips what is already written and finishes the rest; a
run killed at any point loses at most the batch it was writing, and duplicates nothing.
* npy: each file is written to a temporary name, flushed and renamed (``os.replace``); its
  index row is appended only after that. An utterance is done when both exist.
* kaldi: one ark is appended to; after each batch the ark is flushed to disk, *then* the
  batch's scp lines are appended and flushed. feats.scp is the record of what is done: on
  resume, the ark is cut back to the end of the last matrix it lists (dropping a half-written
  batch) and appending continues from there.
* extract.json is written when a run starts (``"complete": false``) with the model's
  fingerprint (a hash of its weights and config), the layer and the format; a rerun into the
  same folder with another model, layer or format is refused, naming what differs.
* A lock file keeps two extractions from writing into one folder at the same time.

Unreadable audio is skipped, named in a warning, counted, and listed in extract.json; so are
utterances too short for a single frame.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cpc.model import LAYERS
from cpc.safe_io import locked, open_append, write_atomic
from cpc.speech.audio import SAMPLE_RATE, AudioError, AudioFile, list_audio, read_audio
from cpc.speech.features import check_device, length_batches, padded_features, source_fingerprint, torch_threads

__all__ = [
    "FORMATS",
    "SUMMARY_FILE",
    "DEFAULT_BATCH_SECONDS",
    "ExtractError",
    "check_options",
    "utterance_files",
    "model_fingerprint",
    "extract_corpus",
    "NpyWriter",
    "KaldiWriter",
    "WRITERS",
]

log = logging.getLogger(__name__)

SUMMARY_FILE = "extract.json"
LOCK_FILE = ".extract.lock"
SOURCES_FILE = "sources.tsv"  # utterance <TAB> size and mtime of the audio its features were computed from
TEMPORARY_SUFFIX = ".cpc-tmp"  # our temporary files: ".<name>.cpc-tmp"; leftovers of a killed run are removed on resume
DEFAULT_BATCH_SECONDS = 80.0  # padded audio per forward pass: ~0.7 GB of paper-model activations (first conv layer)
DEFAULT_THREADS = (
    1  # as the other feature commands (cpc.speech.evaluate.DEFAULT_THREADS); --threads N on a machine of your own
)


class ExtractError(ValueError):
    """Extraction cannot start or go on (duplicate ids, an output folder of another extraction); the message names the file."""


# ----------------------------------------------------------------------------- writing, atomically


def _fsync_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: new temporary file, flushed to disk, renamed over ``path`` (never through a link)."""
    write_atomic(path, data, suffix=TEMPORARY_SUFFIX)


def _append_lines(path: Path, lines: Sequence[str]) -> None:
    """Append whole lines and flush them to disk (a kill leaves at most one partial last line, ignored on resume)."""
    with open_append(path, "a", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))
        handle.flush()
        os.fsync(handle.fileno())


def _complete_lines(path: Path) -> list[str]:
    """The lines of ``path`` that end in a newline (a partial last line is a write cut short by a kill)."""
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    return [line for line in lines[:-1] if line.strip()]  # the last piece is "" or a partial line


class NpyWriter:
    """``<utt>.npy`` (T, D) float32 per utterance plus ``index.tsv`` (utterance, frames, path relative to the folder)."""

    INDEX = "index.tsv"
    HEADER = "utterance\tframes\tpath"

    def __init__(self, out: Path) -> None:
        self.out = out
        self.index = out / self.INDEX
        rows: dict[str, str] = {}
        for line in _complete_lines(self.index):
            fields = line.split("\t")
            if line == self.HEADER or len(fields) != 3:
                continue
            if (out / fields[2]).is_file():  # a row without its file (deleted since) is not done
                rows[fields[0]] = line
        self.done = set(rows)
        # Rewrite the index without partial, duplicate or dangling rows, then only append.
        _fsync_write(self.index, ("\n".join([self.HEADER, *rows.values()]) + "\n").encode())

    def write(self, features: dict[str, np.ndarray]) -> None:
        rows = []
        for utterance, values in features.items():
            buffer = io.BytesIO()
            np.save(buffer, values, allow_pickle=False)
            _fsync_write(self.out / f"{utterance}.npy", buffer.getvalue())
            rows.append(f"{utterance}\t{len(values)}\t{utterance}.npy")
        _append_lines(self.index, rows)  # after the files: a listed utterance is always complete
        self.done.update(features)

    def forget(self, utterances: set[str]) -> None:
        """Drop ``utterances`` from the index, to be written again."""
        rows = [line for line in _complete_lines(self.index)[1:] if line.split("\t", 1)[0] not in utterances]
        _fsync_write(self.index, ("\n".join([self.HEADER, *rows]) + "\n").encode())
        self.done -= utterances

    def finish(self) -> None:
        rows = sorted(_complete_lines(self.index)[1:], key=lambda line: line.split("\t", 1)[0].encode())
        _fsync_write(self.index, ("\n".join([self.HEADER, *rows]) + "\n").encode())

    def outputs(self) -> list[str]:
        return [self.INDEX]


class KaldiWriter:
    """One ``feats.ark`` of Kaldi binary float matrices, appended to, and ``feats.scp`` (key, absolute ark path and offset)."""

    ARK = "feats.ark"
    SCP = "feats.scp"

    def __init__(self, out: Path) -> None:
        import kaldiio.matio

        self.ark = out.resolve() / self.ARK  # the folder resolved, not a link planted at feats.ark
        self.scp = out / self.SCP
        entries: dict[str, int] = {}  # key -> offset
        for number, line in enumerate(_complete_lines(self.scp), start=1):
            key, _, location = line.partition(" ")
            path, _, offset = location.rpartition(":")
            if not offset.isdigit() or not path.endswith(self.ARK):
                raise ExtractError(
                    f"{self.scp}:{number}: expected '<utterance> <path>/{self.ARK}:<offset>', got {line!r}"
                )
            entries[key] = int(offset)
        # Cut the ark back to the end of the last matrix the scp lists: anything after it is a
        # batch whose scp lines were never written (killed in between), so it is redone. (A
        # finished scp is sorted by key, so "last" is the largest offset, not the last line.)
        entries = dict(sorted(entries.items(), key=lambda item: item[1]))
        end = 0
        with open_append(self.ark, "a+b") as handle:
            size = handle.seek(0, os.SEEK_END)
            while entries:
                key, offset = next(reversed(entries.items()))
                try:
                    handle.seek(offset)
                    kaldiio.matio.read_kaldi(handle)
                    end = handle.tell()
                except Exception:  # noqa: BLE001 - a matrix that does not parse is not complete
                    end = size + 1
                if end <= size:
                    break
                log.warning(
                    "%s: the matrix of %s is incomplete in %s; it will be extracted again", self.scp, key, self.ark
                )
                del entries[key]
                end = 0
            handle.truncate(end)
        self.done = set(entries)
        _fsync_write(self.scp, "".join(f"{key} {self.ark}:{offset}\n" for key, offset in entries.items()).encode())

    def write(self, features: dict[str, np.ndarray]) -> None:
        import kaldiio

        lines = io.StringIO()
        with open_append(self.ark, "ab") as handle:
            kaldiio.save_ark(handle, features, scp=lines)  # offsets from handle.tell(), path from handle.name
            handle.flush()
            os.fsync(handle.fileno())
        _append_lines(self.scp, lines.getvalue().splitlines())  # after the ark is on disk
        self.done.update(features)

    def forget(self, utterances: set[str]) -> None:
        """Drop ``utterances`` from the scp, to be appended again (their old matrices stay in the ark, unlisted)."""
        lines = [line for line in _complete_lines(self.scp) if line.split(" ", 1)[0] not in utterances]
        _fsync_write(self.scp, "".join(line + "\n" for line in lines).encode())
        self.done -= utterances

    def finish(self) -> None:
        # Kaldi's tools (utils/validate_data_dir.sh, scp,s:) expect scp files sorted by key, bytewise.
        lines = sorted(_complete_lines(self.scp), key=lambda line: line.split(" ", 1)[0].encode())
        _fsync_write(self.scp, "".join(line + "\n" for line in lines).encode())

    def outputs(self) -> list[str]:
        return [self.ARK, self.SCP]


WRITERS = {"npy": NpyWriter, "kaldi": KaldiWriter}
FORMATS = tuple(WRITERS)


def _locked(out: Path):
    """Hold an exclusive lock on ``out`` (released by the OS if the process dies)."""
    return locked(out, LOCK_FILE, what="cpc extract", error=ExtractError)


# ----------------------------------------------------------------------------- corpus and batches


def utterance_files(files: Sequence[AudioFile]) -> dict[str, AudioFile]:
    """Utterance id -> file; :class:`ExtractError` naming every id that two files share, or that cannot be a key."""
    by_id: dict[str, list[AudioFile]] = {}
    for file in files:
        by_id.setdefault(file.utterance_id, []).append(file)
    duplicates = {u: group for u, group in by_id.items() if len(group) > 1}
    if duplicates:
        shown = "; ".join(f"{u}: {', '.join(f.path for f in group)}" for u, group in list(duplicates.items())[:5])
        more = f" (and {len(duplicates) - 5} more)" if len(duplicates) > 5 else ""
        raise ExtractError(
            f"{len(duplicates)} utterance id(s) shared by several files "
            f"(the id is the file name without its extension): {shown}{more}"
        )
    bad = [u for u in by_id if not u or any(c.isspace() for c in u) or u.startswith(".")]
    if bad:
        raise ExtractError(
            f"utterance ids must be non-empty, without whitespace (they are Kaldi keys and index.tsv fields) "
            f"and not start with '.': {bad[:5]!r}"
        )
    return {u: group[0] for u, group in by_id.items()}


def model_fingerprint(model: torch.nn.Module) -> str:
    """A hash of the model's config and weights: what the features depend on, wherever the checkpoint lives."""
    digest = hashlib.sha1(json.dumps(getattr(model, "config", None), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- extraction


def _settings(model: torch.nn.Module, layer: str, format: str) -> dict:
    return {"model_fingerprint": model_fingerprint(model), "layer": layer, "format": format}


def _check_resumable(out: Path, settings: dict) -> None:
    """Refuse to add to an output folder written with another model, layer or format."""
    summary = out / SUMMARY_FILE
    if not summary.is_file():
        return
    try:
        previous = json.loads(summary.read_text())
    except (json.JSONDecodeError, AttributeError):
        raise ExtractError(f"{summary} is not a cpc extract summary; use another --out folder") from None
    differ = [
        f"{key} {previous.get(key)!r} (now {value!r})" for key, value in settings.items() if previous.get(key) != value
    ]
    if differ:
        raise ExtractError(
            f"{out} holds features extracted with another {', '.join(differ)}; use another --out folder or delete it"
        )


def check_options(
    *, layer: str, format: str, batch_seconds: float, threads: int | None, device: str | torch.device
) -> torch.device:
    """Check extraction options before any work; ValueError naming the option. Returns the device."""
    if format not in WRITERS:
        raise ValueError(f"--format {format!r}: expected one of {', '.join(FORMATS)}")
    if layer not in LAYERS:
        raise ValueError(f"--layer {layer!r}: expected one of {', '.join(LAYERS)}")
    if not (isinstance(batch_seconds, (int, float)) and math.isfinite(batch_seconds) and batch_seconds > 0):
        raise ValueError(f"--batch-seconds must be a positive number of seconds, got {batch_seconds}")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    return check_device(device)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExtractError(f"--out {out} is a file, not a folder")


@dataclass
class _Tally:
    """What one run did, for the summary."""

    written: int = 0
    frames: int = 0
    samples: int = 0
    unreadable: list[str] = field(default_factory=list)
    too_short: list[str] = field(default_factory=list)


def _changed_since_written(out: Path, done: set[str], by_id: dict[str, AudioFile]) -> set[str]:
    """Written utterances whose audio file's size or mtime is not what their features were computed from."""
    recorded = dict(
        line.split("\t", 1) for line in _complete_lines(out / SOURCES_FILE) if "\t" in line
    )  # the last line wins
    now = {utterance: _fingerprint(by_id[utterance].path) for utterance in done if utterance in by_id}
    return {
        utterance
        for utterance, fingerprint in now.items()
        if fingerprint is not None and recorded.get(utterance) != fingerprint
    }


def _fingerprint(path: str) -> str | None:
    """The audio file's size and mtime; None when it cannot be stat'ed (reading it will say why)."""
    try:
        return source_fingerprint(path)
    except OSError:
        return None


def _read_batch(batch: Sequence[AudioFile], model: torch.nn.Module, tally: _Tally) -> dict[str, np.ndarray]:
    """Utterance id -> (S,) float32 at 16 kHz for the files of ``batch`` that can be read and give at least one frame."""
    waves: dict[str, np.ndarray] = {}
    for file in batch:
        try:
            wave = read_audio(file.path, sample_rate=file.sample_rate)
        except AudioError as error:
            log.warning("skipping %s", error)
            tally.unreadable.append(file.path)
            continue
        # Shorter than the receptive field: no frame, and too short to pad into a batch.
        if int(model.output_lengths(torch.tensor([len(wave)]))) == 0:
            log.warning("skipping %s: %d samples is too short for one frame", file.path, len(wave))
            tally.too_short.append(file.utterance_id)
            continue
        waves[file.utterance_id] = wave
    return waves


def _start_summary(model: torch.nn.Module, settings: dict, writer, metadata: dict | None, **options) -> dict:
    return {
        "complete": False,
        **settings,
        **(metadata or {}),
        "outputs": writer.outputs(),
        "sample_rate": SAMPLE_RATE,
        "frame_shift_samples": model.downsample_rate,
        "frame_rate_hz": SAMPLE_RATE / model.downsample_rate,
        "dimension": (model.encoder if settings["layer"] == "encoder" else model.context).output_size,
        **options,
        "torch": torch.__version__,
    }


def _extract_batch(
    batch: Sequence[AudioFile],
    model: torch.nn.Module,
    layer: str,
    device: torch.device,
    threads: int | None,
    writer,
    tally: _Tally,
    out: Path,
) -> None:
    """Read one length batch, compute its features in one padded forward, write them and their sources."""
    sources = {file.utterance_id: _fingerprint(file.path) for file in batch}  # before reading
    waves = _read_batch(batch, model, tally)
    if not waves:
        return
    with torch_threads(threads):
        features = dict(zip(waves, padded_features(model, list(waves.values()), layer, device)))
    # First what they are computed from: a kill in between leaves a line for features never listed, harmless.
    _append_lines(out / SOURCES_FILE, [f"{utterance}\t{sources[utterance]}" for utterance in features])
    writer.write(features)
    tally.written += len(features)
    tally.frames += sum(len(values) for values in features.values())
    tally.samples += sum(len(wave) for wave in waves.values())


def extract_corpus(
    model: torch.nn.Module,
    files: Sequence[AudioFile],
    out: str | os.PathLike,
    *,
    layer: str = "context",
    format: str = "npy",
    batch_seconds: float = DEFAULT_BATCH_SECONDS,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    progress: bool = True,
    unreadable: Sequence[str] = (),
    metadata: dict | None = None,
) -> dict:
    """Write ``layer`` features of every file into ``out`` as ``format``; returns the summary (also in ``out/extract.json``).

    ``files``: e.g. ``cpc.speech.audio.list_audio(DIR).files``; ``unreadable``: files already
    skipped when listing (counted in the summary). Utterances already written in ``out`` are
    skipped (resume). ``threads``: torch intra-op threads during the forward passes (None: the
    caller's setting). ``metadata``: extra fields for the summary (e.g. the checkpoint path).
    """
    resolved_device = check_options(
        layer=layer, format=format, batch_seconds=batch_seconds, threads=threads, device=device
    )
    out = Path(out)
    _check_out(out)
    by_id = utterance_files(files)
    model = model.eval().to(resolved_device)
    settings = _settings(model, layer, format)
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        _check_resumable(out, settings)
        for leftover in out.glob(f".*{TEMPORARY_SUFFIX}"):  # temporaries of a killed run
            leftover.unlink()
        writer = WRITERS[format](out)
        summary = _start_summary(
            model, settings, writer, metadata, device=str(resolved_device), threads=threads, batch_seconds=batch_seconds
        )
        _fsync_write(out / SUMMARY_FILE, (json.dumps(summary, indent=2) + "\n").encode())
        changed, todo = _remaining(out, writer, by_id)
        tally = _Tally(unreadable=list(unreadable))
        elapsed = _write_batches(
            todo,
            model,
            layer,
            resolved_device,
            threads,
            writer,
            tally,
            out,
            batch_seconds=batch_seconds,
            progress=progress,
        )
        if tally.unreadable:
            log.warning(
                "skipped %d unreadable audio file(s); they are listed in %s", len(tally.unreadable), out / SUMMARY_FILE
            )
        summary.update(_finished_summary(writer, by_id, todo, changed, unreadable, tally, elapsed))
        _fsync_write(out / SUMMARY_FILE, (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def _remaining(out: Path, writer, by_id: dict[str, AudioFile]) -> tuple[set[str], list[AudioFile]]:
    """What a resumed run still has to write: the written utterances whose audio changed since (forgotten, to be
    written again) and the files not written; -> (changed ids, files to do)."""
    changed = _changed_since_written(out, writer.done, by_id)
    if changed:
        log.info(
            "%s: %d utterance(s) whose audio file changed since they were written will be extracted again",
            out,
            len(changed),
        )
        writer.forget(changed)
    todo = [file for utterance, file in by_id.items() if utterance not in writer.done]
    if len(todo) < len(by_id):
        log.info(
            "%s: %d of %d utterance(s) already extracted, %d to go",
            out,
            len(by_id) - len(todo),
            len(by_id),
            len(todo),
        )
    return changed, todo


def _write_batches(
    todo: list[AudioFile],
    model: torch.nn.Module,
    layer: str,
    device: torch.device,
    threads: int | None,
    writer,
    tally: _Tally,
    out: Path,
    *,
    batch_seconds: float,
    progress: bool,
) -> float:
    """Extract and write ``todo`` in length batches, then finish the writer; -> the seconds it took."""
    from tqdm import tqdm

    start = time.perf_counter()
    bar = tqdm(
        total=len(todo),
        desc=f"extract {layer}",
        unit="utt",
        dynamic_ncols=True,
        disable=not progress or not todo or not sys.stderr.isatty(),
    )
    try:
        todo.sort(key=lambda file: file.utterance_id)  # ties in length: a fixed order
        for indices in length_batches([file.num_samples for file in todo], int(batch_seconds * SAMPLE_RATE)):
            batch = [todo[i] for i in indices]
            _extract_batch(batch, model, layer, device, threads, writer, tally, out)
            bar.update(len(batch))
            bar.set_postfix_str(
                f"{tally.samples / SAMPLE_RATE / (time.perf_counter() - start):.0f}x real time", refresh=False
            )
    finally:
        bar.close()
    writer.finish()
    return time.perf_counter() - start


def _finished_summary(
    writer,
    by_id: dict[str, AudioFile],
    todo: list[AudioFile],
    changed: set[str],
    unreadable: Sequence[str],
    tally: _Tally,
    elapsed: float,
) -> dict:
    """The summary's fields once every batch is written: counts, frames, audio and compute time."""
    return {
        "complete": True,
        "utterances": len(writer.done),
        "counts": {
            "listed": len(by_id) + len(unreadable),
            "written": tally.written,
            "already_done": len(by_id) - len(todo),
            "unreadable": len(tally.unreadable),
            "too_short": len(tally.too_short),
            "changed": len(changed),
        },
        "frames_written": tally.frames,
        "audio_seconds": tally.samples / SAMPLE_RATE,
        "compute_seconds": elapsed,
        "real_time_factor": tally.samples / SAMPLE_RATE / elapsed if tally.samples else None,
        "unreadable_files": tally.unreadable,
        "too_short_utterances": tally.too_short,
    }


# ----------------------------------------------------------------------------- command line


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "extract",
        help="write a corpus' CPC features (npy files or a Kaldi ark/scp)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", help="a cpc checkpoint (e.g. runs/tiny/checkpoints/last.pt)")
    parser.add_argument(
        "--data", required=True, help="corpus: LibriSpeech-layout folder, flat folder of audio, or TSV manifest"
    )
    parser.add_argument(
        "--out", required=True, help="output folder (created; an interrupted extraction into it is resumed)"
    )
    parser.add_argument(
        "--layer", default="context", metavar="{context,encoder}", help="context c_t (default) or encoder z_t"
    )
    parser.add_argument(
        "--format",
        default="npy",
        metavar="{npy,kaldi}",
        help="npy: <utt>.npy + index.tsv (default); kaldi: feats.ark + feats.scp",
    )
    parser.add_argument(
        "--batch-seconds",
        type=float,
        default=DEFAULT_BATCH_SECONDS,
        help=f"padded audio per forward pass, in seconds (memory; default {DEFAULT_BATCH_SECONDS:g})",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    parser.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS, help=f"torch intra-op threads (default {DEFAULT_THREADS})"
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (it is also off when stderr is not a terminal)"
    )
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    import cpc

    # Everything that can be checked is checked before the model is loaded or audio is read.
    check_options(
        layer=args.layer, format=args.format, batch_seconds=args.batch_seconds, threads=args.threads, device=args.device
    )
    _check_out(Path(args.out))
    model = cpc.load(
        args.checkpoint, needs="speech", what="cpc extract"
    )  # FileNotFoundError / CheckpointError naming the file
    listing = list_audio(args.data)
    try:
        summary = extract_corpus(
            model,
            listing.files,
            args.out,
            layer=args.layer,
            format=args.format,
            batch_seconds=args.batch_seconds,
            device=args.device,
            threads=args.threads,
            progress=not args.no_progress,
            unreadable=listing.unreadable,
            metadata={"checkpoint": str(Path(args.checkpoint).resolve()), "data": str(Path(args.data).resolve())},
        )
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"interrupted; run the same command again to finish the rest in {args.out}") from None
    counts = summary["counts"]
    rtf = f", {summary['real_time_factor']:.0f}x real time" if summary["real_time_factor"] else ""
    print(
        f"{args.out}: {counts['written']} utterance(s) written ({summary['audio_seconds']:.1f} s of audio in "
        f"{summary['compute_seconds']:.1f} s{rtf}), {counts['already_done']} already there, {counts['unreadable']} unreadable, "
        f"{counts['too_short']} too short; {summary['layer']} features, {summary['dimension'] or '?'} dimensions at "
        f"{summary['frame_rate_hz']:g} Hz; summary in {Path(args.out) / SUMMARY_FILE}"
    )
    return 0
