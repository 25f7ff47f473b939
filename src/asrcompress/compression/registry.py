"""The one registry of compression methods.

A method turns the fine-tuned baseline into a variant. It declares whether it takes a level
(and which levels are valid) and how its result is stored: ``pretrained`` variants are plain
``save_pretrained`` folders; ``state_dict`` variants (e.g. dynamically quantized models, whose
modules ``from_pretrained`` cannot rebuild) store the baseline config and re-apply the method's
structural change before loading their weights.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ConfigError

if TYPE_CHECKING:  # the workflow imports this module at parse time: keep torch out of it
    import torch


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    description: str
    apply: Callable[[torch.nn.Module, float | None, dict[str, Any]], torch.nn.Module]
    takes_level: bool = False
    level_range: tuple[float, float] | None = None  # closed interval of valid levels
    storage: str = "pretrained"  # "pretrained" | "state_dict"
    restructure: Callable[[torch.nn.Module, float | None, dict[str, Any]], torch.nn.Module] | None = None
    cpu_only: bool = False

    def check_level(self, level: float | None, key: str) -> None:
        if not self.takes_level:
            if level is not None:
                raise ConfigError(key, f"method '{self.name}' takes no level")
            return
        if level is None:
            raise ConfigError(key, f"method '{self.name}' needs levels")
        low, high = self.level_range or (float("-inf"), float("inf"))
        if not low <= level <= high:
            raise ConfigError(key, f"level {level} of '{self.name}' outside [{low}, {high}]")


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in METHODS:
        raise ValueError(f"compression method {method.name!r} registered twice")
    METHODS[method.name] = method
    return method


def get(name: str, key: str = "compression") -> Method:
    _load_builtin_methods()
    if name not in METHODS:
        raise ConfigError(key, f"unknown compression method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def _load_builtin_methods() -> None:
    # Importing the family modules registers their methods.
    from . import baseline, pruning, quantization  # noqa: F401


@dataclasses.dataclass(frozen=True)
class Variant:
    """One compressed model: a method at a level, with the method's extra parameters."""

    method: str
    level: float | None = None
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def id(self) -> str:
        return self.method if self.level is None else f"{self.method}~{self.level:g}"

    @classmethod
    def parse(cls, variant_id: str) -> "Variant":
        method, _, level = variant_id.partition("~")
        return cls(method, float(level) if level else None)


# Methods the paper configurations name that are not built yet: the DAG skips them and says so.
PLANNED: dict[str, str] = {
    "fp16": "half-precision weights (E1)",
    "prune_int8": "L1 pruning followed by dynamic int8 (E1)",
    "structured_pruning": "HJ-Pruning of CNN channels, heads and FFN units (E2)",
    "dphubert": "joint distillation and structured pruning (E2b)",
    "qat_int": "weight-only per-channel quantization-aware fine-tuning (E3)",
    "nm_sparsity": "N:M sparsity-aware fine-tuning (E3)",
    "downsampling": "signal downsampling / pooling / strided convolution (E4)",
    "layer_removal": "removing the top transformer layers (E4)",
    "layerdrop": "LayerDrop fine-tuning (E4)",
    "distillation": "teacher-student distillation (E5)",
}


def variants_from_config(entries: list[dict[str, Any]]) -> tuple[list[Variant], list[str]]:
    """Expand ``config.compression`` (a list of ``{method, levels?, params?}``) into variants.

    Returns the variants to build and a description of each planned (not yet built) entry, skipped.
    """
    if not entries:
        raise ConfigError("compression", "the variant list is empty; give at least {method: none}")
    variants: list[Variant] = []
    planned: list[str] = []
    for index, entry in enumerate(entries):
        key = f"compression[{index}]"
        name = entry.get("method", "")
        if name in PLANNED and (_load_builtin_methods() or name not in METHODS):
            planned.append(f"{key}: {name} ({PLANNED[name]})")
            continue
        method = get(name, f"{key}.method")
        params = tuple(sorted((entry.get("params") or {}).items()))
        levels = entry.get("levels")
        if method.takes_level and not levels:
            raise ConfigError(f"{key}.levels", f"method '{method.name}' needs a non-empty list of levels")
        for level in levels or [None]:
            method.check_level(None if level is None else float(level), f"{key}.levels")
            variants.append(Variant(method.name, None if level is None else float(level), params))
    ids = [v.id for v in variants]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ConfigError("compression", f"variants listed twice: {', '.join(repeated)}")
    if not variants:
        raise ConfigError("compression", "every listed method is planned, none is built yet; add {method: none}")
    return variants, planned
