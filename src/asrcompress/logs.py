"""Logging for rule scripts: everything (warnings and tracebacks included) goes to the rule's log."""

from __future__ import annotations

import logging
import sys
import warnings


def to_file(path: str) -> None:
    handle = open(path, "a", buffering=1, encoding="utf-8")  # line-buffered: progress shows as it happens
    sys.stderr = sys.stdout = handle
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=handle, force=True
    )
    logging.captureWarnings(True)
    warnings.simplefilter("default")
