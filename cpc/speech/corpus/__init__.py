"""Speech corpora with 10 ms phone labels and speakers.

* :mod:`cpc.speech.corpus.phones`: the 40-class inventory (39 ARPAbet + ``sil``) and engine symbol maps.
* :mod:`cpc.speech.corpus.formats`: alignment / phones / split / speakers / ZeroSpeech ``.item`` files
  and :func:`load_corpus`, the one loader for a built corpus and LibriSpeech + CPC alignments.
* :mod:`cpc.speech.corpus.synth`: ``build_corpus`` (``cpc data synth``), a multi-speaker corpus from
  Festival and espeak-ng.
* :mod:`cpc.speech.corpus.variation`: what the builder adds to the voices (prosody inside utterances,
  simulated rooms, noise) and the options that switch it off.
"""

from cpc.speech.corpus.formats import Corpus, ItemRow, load_corpus, read_item

__all__ = ["Corpus", "ItemRow", "load_corpus", "read_item"]
