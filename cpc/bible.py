"""The King James Bible, from Debian's ``bible`` program (package bible-kjv): the sentences the
synthetic speech corpus reads (cpc.speech.corpus.synth) and one of the text corpus' books (cpc.text.corpus)."""

from __future__ import annotations

import shutil
import subprocess

from cpc.errors import MissingToolError

APT_INSTALL = "apt-get install bible-kjv"


def bible_lines() -> list[str]:
    """The whole KJV from Debian's ``bible`` program, one ``Ge1:1 In the beginning ...`` line per verse (31,102)."""
    if shutil.which("bible") is None:
        raise MissingToolError(f"the `bible` program (Debian bible-kjv) is not installed: run `{APT_INSTALL}`")
    output = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True)
    if output.returncode != 0:
        raise MissingToolError(
            f"`bible -f Gen1:1-Rev22:21` failed: {output.stderr.strip()}; reinstall with `{APT_INSTALL}`"
        )
    return output.stdout.splitlines()
