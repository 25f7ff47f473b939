"""From the validated config to the job grid and each rule's parameters.

``workflow/common.smk`` calls these; they live here so tests reach them without Snakemake.
Every rule gets only the slice of the config it depends on, so editing one key reruns
only the jobs that read it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from .banks import DEMO_NOISE_TYPES
from .compression.registry import Variant, variants_from_config
from .conditions import Condition, conditions_from_config
from .errors import ConfigError


def _key_path(path: Any) -> str:
    key = ""
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key or "<top level>"


def check_schema(config: dict[str, Any], schema_path: str | Path) -> None:
    """Validate against the JSON schema; the first error names the offending key."""
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        error = errors[0]
        key = _key_path(error.absolute_path)
        if error.validator == "additionalProperties":
            extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            prefix = f"{key}." if error.absolute_path else ""
            raise ConfigError(f"{prefix}{extra[0]}" if extra else key, "unknown key (misspelt?)")
        raise ConfigError(key, error.message)


@dataclasses.dataclass(frozen=True)
class Grid:
    """Everything the DAG iterates over."""

    models: list[str]
    variants: list[Variant]
    conditions: list[Condition]

    @property
    def noise_types(self) -> list[str]:
        return sorted({c.noise for c in self.conditions if c.noise})

    @property
    def rt60s(self) -> list[float]:
        return sorted({c.rt60_s for c in self.conditions if c.rt60_s is not None})


def build_grid(config: dict[str, Any]) -> Grid:
    """The semantic checks a schema cannot express, then the grid."""
    models = list(config["models"])
    variants = variants_from_config(config["compression"])
    conditions = conditions_from_config(config["conditions"])
    for condition in conditions:
        if condition.noise and condition.noise not in DEMO_NOISE_TYPES:
            raise ConfigError(
                "conditions", f"noise type {condition.noise!r} has no bank; known: {', '.join(DEMO_NOISE_TYPES)}"
            )
    return Grid(models, variants, conditions)


def load_config(path: str | Path, schema_path: str | Path) -> tuple[dict[str, Any], Grid]:
    """Read, validate and expand a config file outside Snakemake (tests, benchmarks)."""
    config = yaml.safe_load(Path(path).read_text())
    if not isinstance(config, dict):
        raise ConfigError("<top level>", f"{path} does not hold a mapping")
    check_schema(config, schema_path)
    return config, build_grid(config)
