"""The one text normalisation applied to references, hypotheses and training targets."""

from __future__ import annotations

import re

_KEEP = re.compile(r"[^A-Z' ]+")
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Upper-case, keep letters and apostrophes, collapse whitespace (LibriSpeech style).

    >>> normalize("Don't  stop-believing, 2 times!")
    "DON'T STOP BELIEVING TIMES"
    """
    text = text.upper().replace("-", " ")
    text = _KEEP.sub(" ", text)
    return _SPACES.sub(" ", text).strip()
