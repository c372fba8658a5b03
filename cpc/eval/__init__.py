"""Evaluation that no modality owns: the reports every modality writes (:mod:`cpc.eval.report`), and the
``cpc demo`` and ``cpc compare`` commands (:mod:`cpc.eval.demo`, :mod:`cpc.eval.compare`), which run the
demo and the comparison each modality registers. The probes and demos themselves live in the modality
packages (``cpc.speech``, ``cpc.image``, ``cpc.text``)."""
