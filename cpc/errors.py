"""Error types shared across packages. A leaf module: it imports nothing of cpc, so any module
(the core, a modality, a command) can raise or catch these without importing the others."""


class ConfigError(ValueError):
    """A bad recipe or override; the message names the key."""


class AudioError(RuntimeError):
    """A file that cannot be used; the message names the file."""


class FeatureError(ValueError):
    """Features that cannot be used (bad name, length mismatch); the message names the utterance or file."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message names the step."""


class MissingToolError(RuntimeError):
    """A system program (a text-to-speech engine, the Bible text) is not installed; the message has the apt-get line."""
