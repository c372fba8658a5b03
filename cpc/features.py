"""Moved to :mod:`cpc.speech.features` (the runtime helpers to :mod:`cpc.runtime`); these
names stay importable from here until the modules that still import them have moved."""

from cpc.runtime import seeded, torch_threads
from cpc.speech.features import FeatureCache, extract, feature_set

__all__ = ["FeatureCache", "extract", "feature_set", "seeded", "torch_threads"]
