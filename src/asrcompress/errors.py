"""Errors that name the file or config key at fault."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class for errors raised on bad input."""


class AudioError(PipelineError):
    """An audio file is unreadable, empty, too short, non-finite or at the wrong rate."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class ConfigError(PipelineError):
    """A config value is missing, of the wrong type or inconsistent."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"config key '{key}': {reason}")
        self.key = key
