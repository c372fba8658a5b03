"""Festival in batch mode: one ``festival -b`` process synthesises a list of sentences.

Design notes
------------
* ``SayText`` tries to play audio and fails on a machine without a sound card, so each
  sentence is synthesised with ``utt.synth`` and saved with ``utt.save.wave`` (the waveform)
  and ``utt.save.segs`` (one line per phone: end time in seconds, a number, the phone name).
* Voices: ``kal`` and ``ked`` are diphone voices (16 kHz) whose pitch is set through
  ``int_lr_params`` (target F0 mean and spread); ``slt`` is an HTS statistical voice
  (32 kHz) whose F0 comes from its own model, so it only varies in speed.
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


def check_installed() -> None:
    if shutil.which("festival") is None:
        raise FestivalError(f"the `festival` program is not installed: run `{APT_INSTALL}`")


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def synthesize(voice: str, texts: list[str], *, pitches: list[float] | None = None) -> list[tuple[np.ndarray, int, list[tuple[float, str]]]]:
    """Synthesise ``texts`` with one Festival voice (a key of :data:`VOICES`).

    ``pitches[i]`` scales the voice's F0 targets for text i (default 1.0; only voices with F0
    targets accept other values). Returns one ``(wave, sample_rate, segments)`` per text: ``wave`` float32 in [-1, 1] at the
    voice's own rate, ``segments`` the ``(end_time_seconds, phone)`` rows of ``utt.save.segs``.
    """
    check_installed()
    settings = VOICES[voice]
    pitches = [1.0] * len(texts) if pitches is None else pitches
    if settings.f0_mean is None and any(pitch != 1.0 for pitch in pitches):
        raise ValueError(f"festival voice {voice!r} has no pitch control; use pitch 1.0")
    lines = [f"({settings.function})"]
    for index, (text, pitch) in enumerate(zip(texts, pitches, strict=True)):
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
