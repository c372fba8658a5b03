"""A torchaudio that raises at import (torchaudio 2.11 under torch 2.15 raised RuntimeError) costs nothing.

The subprocess tests put a fake ``torchaudio`` package first on PYTHONPATH: its ``__init__``
counts import attempts in a file and raises that RuntimeError. Resampling, filter banks and
``cpc train`` must run on the fallbacks, try the import once, and log why once per process.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from conftest import small_config, write_corpus
from omegaconf import OmegaConf

from cpc.speech import optional_torchaudio

REPO = Path(__file__).resolve().parents[1]
ERROR = (
    "Detected that PyTorch and TorchAudio were compiled with different CUDA versions. "
    "PyTorch has CUDA version 13.2 whereas TorchAudio has CUDA version 13.0."
)
MESSAGE = f"torchaudio unavailable (RuntimeError: {ERROR}): {optional_torchaudio.FALLBACK}"


def broken_torchaudio(folder: Path) -> Path:
    """Write a ``torchaudio`` package into ``folder`` whose import raises (its first line: ERROR) -> ``folder``."""
    package = folder / "torchaudio"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "import os\n"
        "if 'FAKE_TORCHAUDIO_IMPORTS' in os.environ:\n"
        "    with open(os.environ['FAKE_TORCHAUDIO_IMPORTS'], 'a') as attempts:\n"
        "        attempts.write('import\\n')\n"
        f"raise RuntimeError({ERROR!r} + '\\nPlease install the TorchAudio version that matches your PyTorch version.')\n"
    )
    return folder


def run_with_broken_torchaudio(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, int]:
    """Run ``python ARGS`` in the repository with the broken torchaudio first on PYTHONPATH -> (result, import attempts)."""
    fake = broken_torchaudio(tmp_path / "fake")
    attempts = tmp_path / "attempts.txt"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(fake), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "FAKE_TORCHAUDIO_IMPORTS": str(attempts),
    }
    result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    return result, len(attempts.read_text().splitlines()) if attempts.exists() else 0


def write_resampled_corpus(root: Path, rates: dict[str, int], **options) -> None:
    """``write_corpus`` (16 kHz FLAC), then each speaker's files rewritten at ``rates[speaker]`` (default 16 kHz)."""
    for path in write_corpus(root, **options):
        rate = rates.get(path.parent.parent.name, 16000)
        if rate != 16000:
            wave, _ = sf.read(path, dtype="float32")
            sf.write(path, wave, rate)


FEATURES_SCRIPT = """
import logging, os, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
import numpy as np, soundfile as sf, torch
import cpc, cpc.cli, cpc.train, cpc.speech.evaluate, cpc.speech.probes, cpc.speech.abx
from cpc.speech import features as F
from cpc.speech import audio
assert not os.path.exists(os.environ["FAKE_TORCHAUDIO_IMPORTS"]), "importing cpc tried to import torchaudio"

# (a) a corpus at 22050 Hz and 16 kHz; a window of a 22050 Hz file is resampled by librosa
listing = audio.list_audio(sys.argv[1])
assert sorted({file.sample_rate for file in listing.files}) == [16000, 22050], listing.files
file = next(file for file in listing.files if file.sample_rate == 22050)
window = audio.read_audio(file.path, 1000, 5000, sample_rate=file.sample_rate)
whole, _ = sf.read(file.path, dtype="float32")
np.testing.assert_array_equal(window, audio.resample(whole, 22050, backend="librosa")[1000:5000])
try:
    audio.resample(whole, 22050, backend="torchaudio")
    raise AssertionError("backend='torchaudio' did not fail")
except RuntimeError as error:
    assert "does not import here (RuntimeError: Detected that PyTorch" in str(error), error

# (b) filter banks with backend auto are the torch.stft + librosa fallback
wave = audio.read_audio(next(file for file in listing.files if file.sample_rate == 16000).path)
assert torch.equal(F.mfcc(wave), F.mfcc(wave, backend="torch"))
assert torch.equal(F.log_mel_spectrogram(wave, 80), F.log_mel_spectrogram(wave, 80, backend="torch"))
assert not F.have_torchaudio()
print("ok")
"""


@pytest.mark.slow
def test_resampling_and_filter_banks_fall_back_when_torchaudio_raises(tmp_path):
    write_resampled_corpus(tmp_path / "corpus", {"100": 22050}, speakers=2, utterances=2, seconds=1.0)
    result, attempts = run_with_broken_torchaudio(tmp_path, "-c", FEATURES_SCRIPT, str(tmp_path / "corpus"))
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    assert result.stderr.count("torchaudio unavailable") == 1, result.stderr
    assert f"WARNING cpc.speech.optional_torchaudio: {MESSAGE}\n" in result.stderr
    assert attempts == 1  # tried once, on first use, not again for each resampling or spectrogram


@pytest.mark.slow
def test_cli_train_runs_when_torchaudio_raises(tmp_path):
    write_resampled_corpus(tmp_path / "corpus", {"100": 22050, "101": 22050}, speakers=2, utterances=3, seconds=1.0)
    recipe = tmp_path / "tiny.yaml"
    OmegaConf.save(
        small_config(
            tmp_path / "corpus", **{"train.max_steps": 2, "train.valid_every": 2, "train.checkpoint_every": 2}
        ),
        recipe,
    )
    result, attempts = run_with_broken_torchaudio(
        tmp_path, "-m", "cpc.cli", "train", str(recipe), "--run-dir", str(tmp_path / "run")
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("torchaudio unavailable") == 1 and MESSAGE in result.stderr, result.stderr
    assert attempts == 1
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


@pytest.fixture
def fresh_import(monkeypatch):
    """Forget the cached import (and hide an imported torchaudio) for one test; restored afterwards."""
    for name in [name for name in sys.modules if name == "torchaudio" or name.startswith("torchaudio.")]:
        monkeypatch.delitem(sys.modules, name)
    optional_torchaudio._import.cache_clear()
    yield
    optional_torchaudio._import.cache_clear()


def test_broken_install_falls_back_with_one_warning(tmp_path, monkeypatch, caplog, fresh_import):
    monkeypatch.syspath_prepend(str(broken_torchaudio(tmp_path)))
    with caplog.at_level(logging.INFO, logger="cpc.speech.optional_torchaudio"):
        assert (
            optional_torchaudio.load() is None
            and not optional_torchaudio.available()
            and optional_torchaudio.load() is None
        )
        with pytest.raises(RuntimeError, match=r"does not import here \(RuntimeError: Detected that PyTorch"):
            optional_torchaudio.require()
    assert [(record.levelno, record.getMessage()) for record in caplog.records] == [(logging.WARNING, MESSAGE)]
    assert optional_torchaudio.unavailable_reason() == f"RuntimeError: {ERROR}"


def test_missing_torchaudio_is_reported_at_info(monkeypatch, caplog, fresh_import):
    monkeypatch.setitem(sys.modules, "torchaudio", None)  # what Python does for a package that is not installed
    with caplog.at_level(logging.INFO, logger="cpc.speech.optional_torchaudio"):
        assert not optional_torchaudio.available()
    assert [record.levelno for record in caplog.records] == [logging.INFO]
    assert caplog.records[0].getMessage().startswith("torchaudio unavailable (ModuleNotFoundError: ")
