"""Festival in batch mode: one ``festival -b`` process synthesises a list of sentences.

Design notes
------------
* ``SayText`` tries to play audio and fails on a machine without a sound card, so each
  sentence is synthesised with ``utt.synth`` and saved with ``utt.save.wave`` (the waveform)
  and ``utt.save.segs`` (one line per phone: end time in seconds, a number, the phone name).
* Voices: ``kal`` and ``ked`` are diphone voices (16 kHz) whose pitch is set through
  ``int_lr_params`` (target F0 mean and spread); ``slt`` is an HTS statistical voice
  (32 kHz) whose F0 comes from its own model, so it only varies in speed.
* Prosody inside an utterance (diphone voices): ``Duration`` and ``Int_Targets`` are wrapped
  (:data:`_PROSODY_SCHEME`): after the voice's own duration model, each segment of word i is
  stretched by ``cpc_word_stretch[i]`` (later segments move with it; pauses keep their length),
  and after its F0 model each target of word i is scaled by ``cpc_word_f0[i]``. ``utt.save.segs``
  then reports the stretched times the waveform was made with. Without per-word factors the
  wrappers are not loaded, and the output is that of plain ``utt.synth``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["FestivalError", "FestivalVoice", "VOICES", "synthesize", "check_installed"]

APT_INSTALL = "apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"


class FestivalError(RuntimeError):
    """Festival is missing or failed; the message names the voice and what to do."""


@dataclass(frozen=True)
class FestivalVoice:
    """A Festival voice: the Scheme function selecting it and its F0 targets (None: no pitch control)."""

    function: str
    f0_mean: float | None = None
    f0_std: float | None = None


VOICES: dict[str, FestivalVoice] = {
    "kal": FestivalVoice("voice_kal_diphone", 105.0, 14.0),
    "ked": FestivalVoice("voice_ked_diphone", 105.0, 15.0),
    "slt": FestivalVoice("voice_cmu_us_slt_arctic_hts"),
}


# Word i (1-based, in the Word relation) gets factor i of the list; pauses and words past its end get 1.
_PROSODY_SCHEME = """
(define (cpc_word_factor factors seg)
  (let ((index (item.feat seg "R:SylStructure.parent.parent.cpc_index")))
    (if (and (> index 0) (< index (length factors))) (nth index factors) 1.0)))
(set! cpc_festival_duration Duration)
(define (Duration utt)
  (cpc_festival_duration utt)
  (let ((index 0) (start 0.0) (shift 0.0))
    (mapcar (lambda (word) (set! index (+ index 1)) (item.set_feat word "cpc_index" index)) (utt.relation.items utt 'Word))
    (mapcar (lambda (seg)
      (let ((end (item.feat seg "end")))
        (set! shift (+ shift (* (- end start) (- (cpc_word_factor cpc_word_stretch seg) 1))))
        (set! start end)
        (item.set_feat seg "end" (+ end shift))))
      (utt.relation.items utt 'Segment)))
  utt)
(set! cpc_festival_int_targets Int_Targets)
(define (Int_Targets utt)
  (cpc_festival_int_targets utt)
  (mapcar (lambda (seg)
    (let ((scale (cpc_word_factor cpc_word_f0 seg)) (target (item.relation seg 'Target)))
      (if target (mapcar (lambda (point) (item.set_feat point "f0" (* scale (item.feat point "f0")))) (item.daughters target)))))
    (utt.relation.items utt 'Segment))
  utt)
"""


def _scheme_list(values: list[float]) -> str:
    return "'(1.0 " + " ".join(f"{value:.4f}" for value in values) + ")"  # index 0: unused (words count from 1)


def check_installed() -> None:
    if shutil.which("festival") is None:
        raise FestivalError(f"the `festival` program is not installed: run `{APT_INSTALL}`")


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def synthesize(
    voice: str,
    texts: list[str],
    *,
    pitches: list[float] | None = None,
    prosody: list[tuple[list[float], list[float]]] | None = None,
) -> list[tuple[np.ndarray, int, list[tuple[float, str]]]]:
    """Synthesise ``texts`` with one Festival voice (a key of :data:`VOICES`).

    ``pitches[i]`` scales the voice's F0 targets for text i (default 1.0; only voices with F0
    targets accept other values). ``prosody[i]`` = (duration stretches, F0 factors), one per word
    of text i (Festival's words; missing ones get 1.0): variation inside the utterance, only for
    voices with F0 targets. Returns one ``(wave, sample_rate, segments)`` per text: ``wave`` float32 in [-1, 1] at the
    voice's own rate, ``segments`` the ``(end_time_seconds, phone)`` rows of ``utt.save.segs``.
    """
    check_installed()
    settings = VOICES[voice]
    pitches = [1.0] * len(texts) if pitches is None else pitches
    if settings.f0_mean is None and any(pitch != 1.0 for pitch in pitches):
        raise ValueError(f"festival voice {voice!r} has no pitch control; use pitch 1.0")
    if settings.f0_mean is None and prosody is not None:
        raise ValueError(f"festival voice {voice!r} makes its own durations and F0; it takes no per-word prosody")
    lines = [f"({settings.function})"]
    if prosody is not None:
        lines.append(_PROSODY_SCHEME)
    for index, (text, pitch) in enumerate(zip(texts, pitches, strict=True)):
        if prosody is not None:
            stretches, f0_factors = prosody[index]
            lines.append(f"(set! cpc_word_stretch {_scheme_list(stretches)})")
            lines.append(f"(set! cpc_word_f0 {_scheme_list(f0_factors)})")
        if settings.f0_mean is not None:
            lines.append(
                f"(set! int_lr_params '((target_f0_mean {settings.f0_mean * pitch:.3f}) (target_f0_std {settings.f0_std * pitch:.3f})"
                " (model_f0_mean 170) (model_f0_std 34)))"
            )
        lines.append(f"(set! utterance (utt.synth (eval (list 'Utterance 'Text {_scheme_string(text)}))))")
        lines.append(f'(utt.save.wave utterance "{index}.wav" \'riff)')
        lines.append(f'(utt.save.segs utterance "{index}.segs")')
    with tempfile.TemporaryDirectory(prefix="cpc-festival-") as folder:
        script = Path(folder) / "batch.scm"
        script.write_text("\n".join(lines) + "\n")
        process = subprocess.run(["festival", "-b", str(script)], cwd=folder, capture_output=True, text=True)
        results = []
        for index, text in enumerate(texts):
            wav_path, segs_path = Path(folder) / f"{index}.wav", Path(folder) / f"{index}.segs"
            if process.returncode != 0 or not wav_path.is_file() or not segs_path.is_file():
                raise FestivalError(
                    f"festival voice {voice!r} failed on {text!r} (exit {process.returncode}): "
                    f"{process.stderr.strip()[-500:] or 'no message'}; is it installed? `{APT_INSTALL}`"
                )
            wave, rate = sf.read(wav_path, dtype="float32")
            segments = []
            for line in segs_path.read_text().splitlines():
                fields = line.split()
                if len(fields) == 3 and fields[0] != "#":
                    segments.append((float(fields[0]), fields[2]))
            results.append((wave, rate, segments))
    return results
