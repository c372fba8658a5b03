"""Text CPC (paper, section 3.3): sentences encoded one by one, a GRU over the sentences of a chapter, the next sentences predicted.

Importing this package registers its parts in :mod:`cpc.registry`: the sentence encoder
(``model.encoder.name: sentence_conv``), the book data source (``data.name: text``), the
``cpc probe text`` command, ``cpc demo text`` and ``cpc compare text``.
"""

from cpc import registry
from cpc.text.encoder import SentenceEncoderConfig, build_sentence_encoder
from cpc.text.source import TextData, TextDataConfig

registry.register(
    "model.encoder", "sentence_conv", SentenceEncoderConfig, build_sentence_encoder
)  # n-gram ids (B, T, L, G) -> (B, T, C)
registry.register("data", "text", TextDataConfig, TextData)
registry.register_probe("text", "cpc.text.probe")
registry.register_demo("text", "cpc.text.demo")
registry.register_compare("text", "cpc.text.compare")
