"""cpc: Contrastive Predictive Coding (van den Oord, Li, Vinyals 2018) for sequences.

Public API::

    model = cpc.build_model(config)           # from a recipe (cpc.load_config) or a dict
    model = cpc.load("run/checkpoints/last.pt")
    model = cpc.import_cpc_audio("checkpoint_30.pt")   # a CPC_audio model (docs/pretrained.md)
    features, lengths = model.extract_features(waveforms, lengths, layer="context")
"""

from cpc.checkpoint import load
from cpc.config import Config, ConfigError, load_config
from cpc.model import CPC, build_model
from cpc.speech.cpc_audio import import_cpc_audio

__all__ = ["CPC", "Config", "ConfigError", "build_model", "import_cpc_audio", "load", "load_config"]
__version__ = "0.1.0"
