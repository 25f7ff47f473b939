"""The uncompressed reference, so that every variant goes through the same path."""

from __future__ import annotations

from .registry import Method, register

register(Method(name="none", description="the fine-tuned baseline, unchanged (recovery steps make it a "
                                         "'more training' control)", family="baseline"))
