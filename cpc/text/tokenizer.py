"""Words as bags of hashed character n-grams (fastText's subword units, Bojanowski et al. 2017).

Shape legend: N sentences, L words per sentence, G n-gram ids per word.

Why not a word vocabulary: the training text (17th- and 19th-century English) and the probe
text (modern film reviews) share few words, and the paper's remedy (mapping word2vec vectors
into the encoder's space) needs word2vec, which is not available offline. A word is instead
the set of its character n-grams (n = 3..5 of ``<word>``, with boundary marks) plus the whole
word, each hashed into one of ``buckets - 1`` rows of an embedding table (row 0 is padding):
an unseen word such as "screenplay" still shares "scr", "pla", "play>" ... with words of the
books. The hash is CRC-32 (stable across processes and machines, unlike Python's ``hash``).

Text is lower-cased and cut into words (letters and digits, with inner apostrophes: "don't")
and single punctuation marks.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = ["HashedNgrams", "words"]

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)*|[^\sa-z0-9]")


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks: "Don't go!" -> ["don't", "go", "!"]."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class HashedNgrams:
    """word -> up to ``max_ngrams`` ids in [1, buckets): the whole word first, then its n-grams
    (n = min_n .. max_n) in order; words with more n-grams keep the first ones."""

    buckets: int = 2**16
    min_n: int = 3
    max_n: int = 5
    max_ngrams: int = 24

    def __post_init__(self) -> None:
        if self.buckets < 2 or not 1 <= self.min_n <= self.max_n or self.max_ngrams < 1:
            raise ValueError(f"hashed n-grams: need buckets >= 2, 1 <= min_n <= max_n, max_ngrams >= 1, got {self}")

    def _bucket(self, unit: str) -> int:
        return zlib.crc32(unit.encode("utf-8")) % (self.buckets - 1) + 1  # 0 is the padding row

    def ngram_ids(self, word: str) -> list[int]:
        marked = f"<{word}>"
        units = [marked] + [
            f"{n}:{marked[i : i + n]}" for n in range(self.min_n, self.max_n + 1) for i in range(len(marked) - n + 1)
        ]
        # A 3-gram of "<a>" is the whole word: keep each unit once, in order.
        return [self._bucket(unit) for unit in dict.fromkeys(units)][: self.max_ngrams]

    def table(self, vocabulary: list[str]) -> np.ndarray:
        """words (V,) -> ids (V + 1, G) int64: row 0 is the padding word (all 0), row i + 1 word i's ids, 0-padded."""
        rows = np.zeros((len(vocabulary) + 1, self.max_ngrams), dtype=np.int64)
        for index, word in enumerate(vocabulary, start=1):
            ids = self.ngram_ids(word)
            rows[index, : len(ids)] = ids
        return rows

    def encode(self, sentences: list[str], max_words: int) -> np.ndarray:
        """sentences (N,) -> ids (N, L, G) int64, L = the longest sentence's words (at most ``max_words``);
        missing words are all-0 rows (padding). For probes and tests; training uses word tables."""
        tokenised = [words(sentence)[:max_words] for sentence in sentences]
        vocabulary = sorted({word for sentence in tokenised for word in sentence})
        index = {word: i for i, word in enumerate(vocabulary, start=1)}
        table = self.table(vocabulary)
        longest = max([1] + [len(sentence) for sentence in tokenised])
        word_ids = np.zeros((len(sentences), longest), dtype=np.int64)
        for row, sentence in enumerate(tokenised):
            word_ids[row, : len(sentence)] = [index[word] for word in sentence]
        return table[word_ids]  # (N, L, G)
