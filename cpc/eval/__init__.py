"""Evaluation of frozen features: phone and speaker probes, ABX, reports and the demo.

    from cpc.eval import phone_probe, ctc_probe, speaker_probe, abx_error

Each function takes per-utterance (T, D) feature arrays (see :mod:`cpc.speech.features`) and the
corpus' labels; the ``cpc probe`` / ``cpc abx`` / ``cpc demo`` commands are thin layers over them.
"""

from cpc.eval.abx import abx_error
from cpc.eval.probes import ctc_probe, edit_distance, phone_error_rate, phone_probe, speaker_probe

__all__ = ["abx_error", "ctc_probe", "edit_distance", "phone_error_rate", "phone_probe", "speaker_probe"]
