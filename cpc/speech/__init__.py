"""Speech: CPC on raw audio (paper, section 3.1).

Importing this package registers its parts in :mod:`cpc.registry`: the strided conv encoder
(``model.encoder.name: conv``), the speech data source (``data.name: speech``), training-time
waveform augmentation (``train.augment``), its demo (the default of ``cpc demo``) and ``cpc compare``
on speech recipes.

    config.py      schemas: conv encoder, speech data, augmentation
    audio.py       reading audio (SAMPLE_RATE, list_audio, read_audio)
    encoder.py     ConvEncoder: raw audio (B, S) -> latents (B, T, C)
    windows.py     random windows from the files (the loader)
    resident.py    the corpus held on the training device; build_speech_data picks one of the two
    augment.py     waveform augmentation (pitch, reverb, band reject, noise)
    streaming.py   chunked feature extraction (``model.stream()``)
    features.py    features for probes: MFCC / log-mel baselines, model features, the cache
    cpc_audio.py   importer of CPC_audio checkpoints (``cpc import cpc_audio``)
    probes.py      phone (linear, 1 hidden layer, CTC) and speaker probes on frozen features
    abx.py         ABX phone discrimination (ZeroSpeech protocol)
    evaluate.py    a feature set on a corpus: ``evaluate_phone|speaker|abx``, ``cpc probe``, ``cpc abx``
    report.py      the table beside the paper's numbers, PCA of frames by phone, the demo's report
    demo.py        the demo: corpus, training, probes and ABX against baselines, report
    compare.py     ``cpc compare``: variants of a recipe trained alike, then probed
    corpus/        corpora with phone labels: formats, the phone inventory, ``cpc data synth``
"""

from cpc import registry
from cpc.speech.audio import SAMPLE_RATE
from cpc.speech.augment import build_augmentation
from cpc.speech.config import AugmentConfig, ConvEncoderConfig, SpeechDataConfig
from cpc.speech.encoder import build_conv_encoder
from cpc.speech.resident import build_speech_data

registry.register("model.encoder", "conv", ConvEncoderConfig, build_conv_encoder)  # raw audio (B, S) -> (B, T, C)
registry.register("data", "speech", SpeechDataConfig, build_speech_data)  # the loader, or the corpus held on the device
registry.register_train_section(
    "augment", registry.TrainSection(AugmentConfig, build_augmentation, data_names=("speech",), what="speech waveforms")
)
registry.register_demo("speech", "cpc.speech.demo")
registry.register_compare("speech", "cpc.speech.compare")

__all__ = ["SAMPLE_RATE"]
