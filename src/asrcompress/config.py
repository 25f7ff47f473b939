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
from .catalog import BANK_OPTIONS, NOISE_LAYOUTS, RIR_LAYOUTS, SPEECH_LAYOUTS, Archive, Catalog, Subset, load_catalog
from .compression.registry import Variant, variants_from_config
from .conditions import Condition, RandomProtocol, conditions_from_config, is_simulated_room
from .errors import ConfigError
from .lm import LanguageModelSpec
from .models import ModelSpec
from .report_names import TABLE_LAYOUTS
from .search import GREEDY, DecoderSpec


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
    _check_report_names(config)


def _check_report_names(config: dict[str, Any]) -> None:
    """The study tables asked for exist (their names live in report_names, not in the schema)."""
    for index, name in enumerate((config.get("report") or {}).get("tables") or []):
        if name not in TABLE_LAYOUTS:
            raise ConfigError(f"report.tables[{index}]", f"{name!r} is not one of {', '.join(TABLE_LAYOUTS)}")


@dataclasses.dataclass(frozen=True)
class CorpusBank:
    """A noise or RIR bank prepared from a catalog subset (``config.banks.corpora.<name>``)."""

    name: str
    kind: str  # "noise" | "rir"
    subset: Subset | None  # None for a bank made from a folder (options["folder"])
    options: dict[str, Any]

    @property
    def layout(self) -> str:
        return self.subset.layout if self.subset else "folder"

    @property
    def roots(self) -> list[str]:
        return self.subset.roots if self.subset else [str(self.options["folder"])]


@dataclasses.dataclass(frozen=True)
class Grid:
    """Everything the DAG iterates over."""

    models: list[str]
    variants: list[Variant]
    conditions: list[Condition]
    splits: dict[str, list[Subset]] = dataclasses.field(default_factory=dict)  # catalog corpora only
    corpus_banks: dict[str, CorpusBank] = dataclasses.field(default_factory=dict)
    decoders: list[DecoderSpec] = dataclasses.field(default_factory=lambda: [GREEDY])
    language_models: dict[str, LanguageModelSpec] = dataclasses.field(default_factory=dict)  # those a decoder uses

    @property
    def baseline_variant(self) -> str | None:
        """The uncompressed, untouched model every variant is compared with (paired tests, relative WER)."""
        return next((v.id for v in self.variants if v.id == "none"), None)

    @property
    def archives(self) -> list[Archive]:
        """Every archive some split or bank needs, once each."""
        subsets = [s for split in self.splits.values() for s in split]
        subsets += [b.subset for b in self.corpus_banks.values() if b.subset is not None]
        return list({(s.archive.dataset, s.archive.name): s.archive for s in subsets}.values())


def _corpus_banks(section: dict[str, Any], catalog: Catalog | None) -> dict[str, CorpusBank]:
    banks = {}
    for name, entry in (section or {}).items():
        options = {k: v for k, v in entry.items() if k != "subset"}
        if "folder" in entry:
            subset, kind, layout = None, entry["kind"], "folder"
        else:
            key = f"banks.corpora.{name}.subset"
            assert catalog is not None
            subset = catalog.subset(entry["subset"], key)
            layout = subset.layout
            if subset.layout in NOISE_LAYOUTS:
                kind = "noise"
            elif subset.layout in RIR_LAYOUTS and subset.name in ("real", "simulated"):
                kind = "rir"
            else:
                raise ConfigError(key, f"{subset.ref} ({subset.layout} layout) is not a noise or RIR subset")
        for option in sorted(set(options) - BANK_OPTIONS[layout]):
            allowed = ", ".join(sorted(BANK_OPTIONS[layout])) or "none"
            raise ConfigError(f"banks.corpora.{name}.{option}", f"does not apply to a {layout} bank (options: {allowed})")
        if "babble" in options and (subset is None or subset.name != "speech"):
            raise ConfigError(f"banks.corpora.{name}.babble", "babble is made from speech: use a musan/speech subset")
        if "rt60_range_s" in options and kind != "rir":
            raise ConfigError(f"banks.corpora.{name}.rt60_range_s", "only RIR banks have an RT60")
        banks[name] = CorpusBank(name, kind, subset, options)
    return banks


def _check_bank_names(conditions: list[Condition], config: dict[str, Any], banks: dict[str, CorpusBank]) -> None:
    noise_banks = [*DEMO_NOISE_TYPES, *(n for n, b in banks.items() if b.kind == "noise")]
    rir_banks = [n for n, b in banks.items() if b.kind == "rir"]
    protocols = (config["conditions"].get("random") or {})
    for condition in conditions:
        if condition.kind == "random":
            protocol = RandomProtocol.from_config(condition.protocol, protocols[condition.protocol])
            needed_noise, needed_rir = list(protocol.noise), [protocol.rir] if protocol.uses_reverb else []
            key = f"conditions.random.{condition.protocol}"
        else:
            needed_noise, needed_rir = [condition.noise] if condition.noise else [], [condition.rir] if condition.rir else []
            key = "conditions"
        for noise in needed_noise:
            if noise not in noise_banks:
                raise ConfigError(key, f"noise bank {noise!r} is unknown; known: {', '.join(noise_banks)} "
                                       "(corpus banks are declared under banks.corpora)")
        for rir in needed_rir:
            if not is_simulated_room(rir) and rir not in rir_banks:
                raise ConfigError(key, f"RIR bank {rir!r} is unknown; give a simulated RT60 in seconds or one of: "
                                       f"{', '.join(rir_banks) or '(no RIR bank in banks.corpora)'}")


def _check_babble_voices(config: dict[str, Any]) -> None:
    """Babble talkers must not be test speakers, or the target would be in the noise."""
    demo = config["corpus"].get("demo") or {}
    test_voices = set((demo.get("splits") or {}).get("test", {}).get("voices", []))
    shared = sorted(test_voices & set(((config.get("banks") or {}).get("noise") or {}).get("babble_voices", [])))
    if config["corpus"]["kind"] == "demo" and shared:
        raise ConfigError("banks.noise.babble_voices", f"{', '.join(shared)} also speak(s) in the test split")


def _catalog_splits(corpus: dict[str, Any], catalog: Catalog | None) -> dict[str, list[Subset]]:
    if corpus["kind"] != "catalog":
        return {}
    assert catalog is not None
    splits = {}
    for split, entry in corpus["splits"].items():
        subsets = [catalog.subset(ref, f"corpus.splits.{split}.subsets[{i}]") for i, ref in enumerate(entry["subsets"])]
        for i, subset in enumerate(subsets):
            if subset.layout not in SPEECH_LAYOUTS:
                raise ConfigError(f"corpus.splits.{split}.subsets[{i}]", f"{subset.ref} is not transcribed speech")
        splits[split] = subsets
    return splits


def _check_training_gpus(config: dict[str, Any]) -> None:
    gpus = (config.get("finetune") or {}).get("gpus", 1)
    if gpus > 1 and not config.get("gpus_per_job", 1):
        raise ConfigError("finetune.gpus", f"{gpus} GPUs per training job, but gpus_per_job is 0 (jobs run on CPUs): "
                                           "set gpus_per_job: 1, or finetune.gpus: 1")


def _check_decode_backend(config: dict[str, Any]) -> None:
    backend = (config.get("decode") or {}).get("backend", "torch")
    if backend == "onnxruntime" and not (config.get("onnx") or {}).get("export", True):
        raise ConfigError("decode.backend", "onnxruntime decodes the exported graphs: set onnx.export: true "
                                            "(or decode.backend: torch)")


def build_grid(config: dict[str, Any], catalog: Catalog | None = None) -> Grid:
    """The semantic checks a schema cannot express, then the grid.

    ``catalog`` defaults to the file ``config['catalog']`` names, read only when a split or bank needs it.
    """
    if catalog is None and (config["corpus"]["kind"] == "catalog" or (config.get("banks") or {}).get("corpora")):
        catalog = load_catalog(config.get("catalog", "config/catalog.yaml"))
    models = list(config["models"])
    for name, entry in config["models"].items():
        ModelSpec.from_config(name, entry)
    variants = variants_from_config(config["compression"])
    conditions = conditions_from_config(config["conditions"])
    banks = _corpus_banks((config.get("banks") or {}).get("corpora"), catalog)
    _check_bank_names(conditions, config, banks)
    splits = _catalog_splits(config["corpus"], catalog)
    _check_babble_voices(config)
    _check_training_gpus(config)
    _check_decode_backend(config)
    fine_tuned = [name for name, entry in config["models"].items() if entry.get("finetune", True)]
    if fine_tuned and splits and not {"train", "dev"} <= set(splits):
        raise ConfigError("corpus.splits", f"models {', '.join(fine_tuned)} are fine-tuned: give train and dev subsets "
                                           "(or set models.<name>.finetune: false)")
    if config["corpus"]["kind"] == "catalog":
        _check_training_splits(variants, set(splits))
    decoders, language_models = _decoders(config.get("decode") or {})
    if config["corpus"]["kind"] == "catalog" and "train" not in splits:
        for lm in language_models.values():
            if lm.source == "train":
                raise ConfigError(f"decode.language_models.{lm.name}.source",
                                  "'train' estimates the LM from the train split, which corpus.splits does not define")
    return Grid(models, variants, conditions, splits, banks, decoders, language_models)


def _decoders(section: dict[str, Any]) -> tuple[list[DecoderSpec], dict[str, LanguageModelSpec]]:
    """The configured decoders, and the language models at least one of them uses."""
    lm_entries = section.get("language_models") or {}
    entries = section.get("decoders") or {"greedy": {"kind": "greedy"}}
    decoders = [DecoderSpec.from_config(name, entry or {}, list(lm_entries)) for name, entry in entries.items()]
    used = {d.language_model for d in decoders if d.language_model}
    language_models = {name: LanguageModelSpec.from_config(name, entry) for name, entry in lm_entries.items() if name in used}
    return decoders, language_models


def _check_training_splits(variants: list[Variant], splits: set[str]) -> None:
    """Calibration reads the train split, and any training also evaluates on dev."""
    for variant in variants:
        needed = ({"train"} if variant.needs_training_data else set()) | ({"train", "dev"} if variant.trains else set())
        missing = sorted(needed - splits)
        if missing:
            raise ConfigError("corpus.splits", f"variant {variant.id} needs the {' and '.join(missing)} split(s) "
                                               "(calibration or recovery fine-tuning): add them")


def load_config(path: str | Path, schema_path: str | Path) -> tuple[dict[str, Any], Grid]:
    """Read, validate and expand a config file outside Snakemake (tests, benchmarks)."""
    config = yaml.safe_load(Path(path).read_text())
    if not isinstance(config, dict):
        raise ConfigError("<top level>", f"{path} does not hold a mapping")
    check_schema(config, schema_path)
    return config, build_grid(config)
