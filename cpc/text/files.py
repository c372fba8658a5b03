"""Your own corpus as text-CPC documents (``cpc data text --from PATH [PATH ...]``).

Accepted, in the order given (folders: their ``*.txt`` and ``*.jsonl`` files, recursively, in
sorted path order, so a build never depends on the order the file system lists them):

* a plain-text file: one document; paragraphs are separated by blank lines, the lines of a
  paragraph are joined, and each paragraph is split into sentences (cpc.text.sentences.split_sentences);
* a ``.jsonl`` file: one document per line, a JSON object with a string field ``text`` (blank
  lines in the text separate paragraphs, as in a file).

Skipped, counted and named in one warning per reason (never a crash): empty files, binary files
(a NUL byte in the first 8 KiB), bytes that are not UTF-8, JSON lines that do not parse or have
no string ``text``, and documents of fewer than two sentences (CPC predicts the next sentence:
one sentence has none).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from cpc.text.sentences import split_sentences

log = logging.getLogger(__name__)

__all__ = ["SKIP_REASONS", "ReadReport", "read_corpus_files"]

SOURCE = "corpus"  # the source column of sentences.tsv for a user's documents
SUFFIXES = (".txt", ".jsonl")  # what a folder contributes
SKIP_REASONS = {
    "empty": "empty (no text)",
    "binary": "binary (a NUL byte in the first 8 KiB)",
    "undecodable": "not UTF-8",
    "bad_json": "not a JSON object with a string 'text' field",
    "one_sentence": "fewer than two sentences (no next sentence to predict)",
}
_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n")


@dataclass
class ReadReport:
    """What reading found: the documents kept, and per skip reason the names of what was left out."""

    documents: list[tuple[str, str, list[str]]] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=lambda: {reason: [] for reason in SKIP_REASONS})

    def warn(self) -> None:
        """One warning per skip reason, naming up to five of them."""
        for reason, names in self.skipped.items():
            if names:
                shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                log.warning(
                    "skipped %d %s: %s: %s",
                    len(names),
                    "input" if len(names) == 1 else "inputs",
                    SKIP_REASONS[reason],
                    shown,
                )


def _files(paths: list[str | Path]) -> list[tuple[Path, str]]:
    """Paths -> (file, the name its documents carry), folders expanded in sorted order."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += [
                (file, f"{path.name}/{file.relative_to(path).as_posix()}")
                for file in sorted(path.rglob("*"))
                if file.is_file() and file.suffix.lower() in SUFFIXES
            ]
        elif path.is_file():
            found.append((path, path.name))
        else:
            raise FileNotFoundError(f"--from {path}: no such file or folder")
    return found


def _sentences(text: str) -> list[str]:
    return [
        sentence
        for paragraph in _PARAGRAPH.split(text.replace("\r\n", "\n"))
        for sentence in split_sentences(paragraph.replace("\n", " "))
    ]


def _name(text: str) -> str:
    return " ".join(text.split()) or "?"  # sentences.tsv is tab-separated: a name holds no tab or newline


def read_corpus_files(paths: list[str | Path], *, limit: int | None = None) -> ReadReport:
    """Files and folders -> documents (source ``corpus``, name = the file's, ``:N`` for line N of a .jsonl) in order,
    and what was skipped. ``limit``: stop after N documents."""
    report = ReadReport()

    def add(name: str, text: str) -> None:
        sentences = _sentences(text)
        if not sentences:
            report.skipped["empty"].append(name)
        elif len(sentences) < 2:
            report.skipped["one_sentence"].append(name)
        else:
            report.documents.append((SOURCE, name, sentences))

    for file, name in _files(paths):
        if limit is not None and len(report.documents) >= limit:
            break
        name = _name(name)
        data = file.read_bytes()
        if b"\x00" in data[:8192]:
            report.skipped["binary"].append(name)
            continue
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            report.skipped["undecodable"].append(f"{name} (byte {error.start})")
            continue
        if not text.strip():
            report.skipped["empty"].append(name)
        elif file.suffix.lower() != ".jsonl":
            add(name, text)
        else:
            for number, line in enumerate(text.splitlines(), start=1):
                if not line.strip() or (limit is not None and len(report.documents) >= limit):
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    record = None
                if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                    report.skipped["bad_json"].append(f"{name}:{number}")
                else:
                    add(f"{name}:{number}", record["text"])
    report.documents = report.documents[:limit]
    return report
