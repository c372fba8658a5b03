"""Evaluation that no modality owns: the training-curve and comparison reports every modality writes
(:mod:`cpc.eval.report`). Each modality's probes and demo live in its package (``cpc.speech``,
``cpc.image``, ``cpc.text``)."""
