"""Speech-specific parts: importers of speech models trained by other codebases (:mod:`cpc.speech.cpc_audio`)."""
