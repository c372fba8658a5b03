"""The sentence encoder: z_t = g_enc(sentence t), one latent vector per sentence (paper, section 3.3).

Shape legend: B batch, T sentences per sequence, L words per sentence, G n-gram ids per word,
E embedding size, C latent size (conv channels).

The paper's sentence encoder is a 1-D convolution + ReLU + mean-pooling over the words of a
sentence (word2vec-initialised 620-d embeddings, 2400-d output, BookCorpus); a GRU reads the
sentence latents and predicts up to 3 sentences ahead. Here the embedding of a word is the mean
of the embeddings of its hashed character n-grams (cpc.text.tokenizer: the books and the film
reviews share few words; n-grams they share more), so:

    embed     mean of n-gram embeddings per word (EmbeddingBag, padding id 0)   (B*T, L, E)
    conv      1-D conv over words, kernel k, zero padding k // 2, then ReLU      (B*T, C, L)
    pool      mean over the sentence's words (padding words masked)             (B*T, C) -> (B, T, C)

Two levels of lengths, masked like frames in speech: words past a sentence's end are
all-padding rows (id 0 everywhere), whose embedding is exactly zero (as the conv's own zero
padding) and which the mean pool leaves out; sentences past a sequence's ``lengths`` are
all-padding sentences, their latent is 0 and the loss leaves them out through ``lengths``.
So a padded batch gives each sequence the latents it has alone. Each sentence is encoded on
its own, so latent t depends on sentence t only: causality over sentences is the context's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cpc.text.tokenizer import HashedNgrams

__all__ = ["SentenceEncoder", "SentenceEncoderConfig", "build_sentence_encoder"]


@dataclass
class SentenceEncoderConfig:
    name: str = "sentence_conv"
    # The tokenizer is part of the model (the embedding rows are hash buckets), so it lives here
    # and travels in every checkpoint: probes tokenise new text exactly as training did.
    buckets: int = 65536  # hash buckets, row 0 = padding
    min_n: int = 3  # character n-grams of "<word>", n = min_n .. max_n
    max_n: int = 5
    max_ngrams: int = 24  # G: ids per word (the whole word first)
    embedding_size: int = 128  # E
    kernel_size: int = 3  # words the conv sees at once
    latent_size: int = 256  # C


class SentenceEncoder(nn.Module):
    """n-gram ids (B, T, L, G) + sentences per sequence (B,) -> latents (B, T, C), lengths (B,)."""

    def __init__(
        self,
        *,
        buckets: int = 65536,
        min_n: int = 3,
        max_n: int = 5,
        max_ngrams: int = 24,
        embedding_size: int = 128,
        kernel_size: int = 3,
        latent_size: int = 256,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"model.encoder.kernel_size must be odd and positive (a centred window of words), got {kernel_size}"
            )
        self.tokenizer = HashedNgrams(buckets=buckets, min_n=min_n, max_n=max_n, max_ngrams=max_ngrams)
        self.output_size = latent_size
        self.embedding = nn.EmbeddingBag(buckets, embedding_size, mode="mean", padding_idx=0)
        self.conv = nn.Conv1d(embedding_size, latent_size, kernel_size, padding=kernel_size // 2)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Latents for ``lengths`` sentences: one each."""
        return lengths

    def embed_words(self, ids: Tensor) -> Tensor:
        """ids (..., L, G) -> word embeddings (..., L, E): the mean of each word's n-gram embeddings, 0 for padding words."""
        flat = ids.reshape(-1, ids.shape[-1])  # (N, G)
        return self.embedding(flat).view(*ids.shape[:-1], -1)  # (..., L, E)

    def forward(self, ids: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """ids (B, T, L, G) int, lengths (B,) sentences per sequence or None (all T) -> latents (B, T, C), lengths (B,) long."""
        if ids.dim() != 4 or ids.dtype.is_floating_point or ids.shape[-1] != self.tokenizer.max_ngrams:
            raise ValueError(
                f"expected n-gram ids of shape (B, T, L, {self.tokenizer.max_ngrams}) int, got {tuple(ids.shape)} {ids.dtype}"
            )
        batch_size, sentences, num_words, _ = ids.shape
        if lengths is None:
            lengths = torch.full((batch_size,), sentences, dtype=torch.long, device=ids.device)
        elif (
            lengths.shape != (batch_size,)
            or lengths.dtype.is_floating_point
            or bool(((lengths < 0) | (lengths > sentences)).any())
        ):
            raise ValueError(
                f"expected lengths (B,) = ({batch_size},) integers in [0, {sentences}], got {tuple(lengths.shape)} {lengths.tolist()}"
            )
        ids = ids.reshape(batch_size * sentences, num_words, -1)  # (B*T, L, G)
        words = self.embed_words(ids)  # (B*T, L, E)
        hidden = torch.relu(self.conv(words.transpose(1, 2)))  # (B*T, C, L)
        present = (
            (ids[..., 0] != 0).unsqueeze(1).to(hidden.dtype)
        )  # (B*T, 1, L): a word's first id (the whole word) is never 0
        pooled = (hidden * present).sum(-1) / present.sum(-1).clamp(min=1)  # (B*T, C)
        return pooled.view(batch_size, sentences, -1), lengths.to(torch.long)


def build_sentence_encoder(config: SentenceEncoderConfig) -> SentenceEncoder:
    return SentenceEncoder(
        buckets=config.buckets,
        min_n=config.min_n,
        max_n=config.max_n,
        max_ngrams=config.max_ngrams,
        embedding_size=config.embedding_size,
        kernel_size=config.kernel_size,
        latent_size=config.latent_size,
    )
