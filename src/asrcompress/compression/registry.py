"""The one registry of compression methods, and the variants a config makes of them.

A *method* is a family member configured by name and level (``magnitude`` at 0.5, ``qat`` at 4
bits, ``nm_sparsity`` at 2:4). A *variant* is a chain of method steps plus optional recovery
fine-tuning: ``magnitude~0.5+dynamic_int8`` (prune, then quantize) or
``nm_sparsity~2of4+qat~4+ft300`` (both, kept during 300 fine-tuning steps).

Making a variant (``store.compress``) runs, for every step in order, the method's ``prepare``
(masks, fake quantizers, gates, inserted modules), then one training phase (the method's own
``train`` when it has one, otherwise recovery fine-tuning when the config asks for it), then every
step's ``finalize`` (masks made permanent, real integer kernels). Loading a variant rebuilds the
baseline architecture from its config and replays each step's ``restructure`` with the metadata
the step recorded, so any change of shape or module type round-trips through one state dict.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Union

from ..errors import ConfigError

if TYPE_CHECKING:  # the workflow imports this module at parse time: keep torch out of it
    import torch

    from .context import CompressionContext

Level = Union[float, str]  # a fraction, factor, bit width or layer count; "N:M" for N:M sparsity
Transform = Callable[["torch.nn.Module", Any, "Params", "CompressionContext"], "torch.nn.Module"]
Restructure = Callable[["torch.nn.Module", Any, "Params", dict], "torch.nn.Module"]


# ----------------------------------------------------------------------------------------------
# Levels: each method says what a valid level is; the parsed value is canonical (id and card).


@dataclasses.dataclass(frozen=True)
class LevelSpec:
    """Parses and checks a method's level; ``describe`` is shown in errors."""

    parse: Callable[[Any, str], Level]
    describe: str


def fraction(low: float = 0.0, high: float = 1.0, *, low_open: bool = True, high_open: bool = True) -> LevelSpec:
    """A real number in an interval, open by default (pruning 0 % or 100 % is not a variant)."""

    def parse(raw: Any, key: str) -> float:
        value = _number(raw, key)
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if too_low or too_high:
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise ConfigError(key, f"level {raw!r} outside {interval}")
        return value

    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    return LevelSpec(parse, f"a number in {interval}")


def integer(minimum: int = 1, maximum: int | None = None, choices: tuple[int, ...] | None = None) -> LevelSpec:
    """A whole number (bit width, downsampling factor, layers kept)."""

    def parse(raw: Any, key: str) -> float:
        value = _number(raw, key)
        if value != int(value):
            raise ConfigError(key, f"level {raw!r} must be a whole number")
        if choices is not None and int(value) not in choices:
            raise ConfigError(key, f"level {raw!r} not one of {', '.join(map(str, choices))}")
        if value < minimum or (maximum is not None and value > maximum):
            raise ConfigError(key, f"level {raw!r} outside [{minimum}, {maximum if maximum is not None else 'inf'}]")
        return float(int(value))

    describe = f"one of {', '.join(map(str, choices))}" if choices else f"a whole number >= {minimum}"
    return LevelSpec(parse, describe)


def nm_pattern() -> LevelSpec:
    """``"N:M"``: N non-zero weights in every group of M consecutive input weights."""

    def parse(raw: Any, key: str) -> str:
        if isinstance(raw, int) and not isinstance(raw, bool):
            # YAML 1.1 reads an unquoted 2:4 as the sexagesimal integer 124.
            raise ConfigError(key, f"level {raw!r} is a number: quote N:M patterns in YAML (\"2:4\")")
        match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", str(raw))
        if not match:
            raise ConfigError(key, f"level {raw!r} is not an N:M pattern such as '2:4'")
        n, m = int(match.group(1)), int(match.group(2))
        if not 0 < n < m:
            raise ConfigError(key, f"level {raw!r}: N:M needs 0 < N < M")
        return f"{n}:{m}"

    return LevelSpec(parse, "an N:M pattern such as '2:4'")


def _number(raw: Any, key: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise ConfigError(key, f"level {raw!r} is not a finite number")
    return float(raw)


def level_token(level: Level) -> str:
    """How a level appears in a variant id (and so in file names): ``0.5``, ``4``, ``2of4``.

    >>> [level_token(level) for level in (0.5, 4.0, "2:4")]
    ['0.5', '4', '2of4']
    """
    return level.replace(":", "of") if isinstance(level, str) else f"{level:g}"


def step_key(method: str, level: Level) -> str:
    """A step's id, ``method~level`` (``layer_removal~4``, ``nm_sparsity~2of4``): what variant ids are
    made of, and what job-time config errors name, since ``prepare`` does not know the entry's index.

    >>> step_key("nm_sparsity", "2:4")
    'nm_sparsity~2of4'
    """
    return f"{method}~{level_token(level)}"


# ----------------------------------------------------------------------------------------------
# Config values


def _is_whole(value: Any, minimum: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= minimum


def require_whole(value: Any, key: str, minimum: int = 1) -> int:
    """``value`` itself, if it is an int (not a bool) >= ``minimum``; else a ConfigError naming ``key``."""
    if not _is_whole(value, minimum):
        raise ConfigError(key, f"must be a whole number >= {minimum}, got {value!r}")
    return value


# ----------------------------------------------------------------------------------------------
# Parameters: one frozen dataclass per method, which checks itself


class ParamError(ValueError):
    """A parameter value its dataclass refuses; :meth:`Method.resolve_params` names the config key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclasses.dataclass(frozen=True)
class Params:
    """A method's parameters: the method's instance holds its defaults; ``dataclasses.replace`` with a
    config's values makes a step's, checked in ``__post_init__`` (lists become tuples, so steps hash).

    Recipes store them as a plain dict (:meth:`to_json`); the card records each step's ``schema`` (type and
    ``VERSION``, raised when a field changes meaning), as torchao's configs do.
    """

    VERSION: ClassVar[int] = 1

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                object.__setattr__(self, field.name, tuple(value))
        self.check()

    def check(self) -> None:
        """Raise :class:`ParamError` for a value the method cannot use (no model or data at hand)."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in dataclasses.fields(cls))

    def to_json(self) -> dict[str, Any]:
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in ((name, getattr(self, name)) for name in self.names())}

    def schema(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "version": self.VERSION}

    # Checks the methods' parameter classes share; the messages are the config's.

    def whole(self, name: str, minimum: int = 1, optional: bool = False) -> None:
        value = getattr(self, name)
        if not (optional and value is None) and not _is_whole(value, minimum):
            raise ParamError(name, f"must be a whole number >= {minimum}, got {value!r}")

    def choice(self, name: str, choices: tuple[Any, ...], hint: str = "") -> None:
        value = getattr(self, name)
        if value not in choices:
            raise ParamError(name, f"{value!r} is not one of {', '.join(map(str, choices))}{hint}")

    def flag(self, name: str) -> None:
        value = getattr(self, name)
        if not isinstance(value, bool):
            raise ParamError(name, f"must be true or false, got {value!r}")


@dataclasses.dataclass(frozen=True)
class NoParams(Params):
    """A method without parameters."""


# ----------------------------------------------------------------------------------------------
# Methods


def _unchanged(model, _level, _params, _context):
    return model


@dataclasses.dataclass(frozen=True)
class Method:
    """One compression method. ``params`` is its parameter dataclass holding the defaults."""

    name: str
    description: str
    family: str  # quantization | pruning | sparsity | structured | downsampling | depth | distillation
    prepare: Transform = _unchanged
    finalize: Transform = _unchanged
    restructure: Restructure | None = None  # rebuilds the architecture (no data) before loading weights
    train: Callable[["torch.nn.Module", "CompressionContext", "Recovery"], "torch.nn.Module"] | None = None
    level: LevelSpec | None = None  # None: the method takes no level
    params: Params = NoParams()
    training: str = "optional"  # "never" (a conversion: last in a chain) | "optional" | "required"
    needs_data: bool = False  # reads training utterances even without recovery (calibration)
    cpu_only: bool = False  # its kernels exist on the CPU only
    accelerate: Restructure | None = None  # swaps in GPU kernels (torchao, semi-structured sparse) on CUDA
    reshapes: bool = False  # removes, renames or wraps modules (or builds a new model): first in a chain only
    # (float ONNX path, out path, params, context): makes the variant an ONNX Runtime graph (store, deploy.py)
    onnx_convert: Callable[[Any, Any, "Params", "CompressionContext"], None] | None = None
    version: int = 1  # of its implementation: a new version rebuilds its variants (compress params, card.json)
    # Parameter values whose model has no ONNX export (checked when an ONNX Runtime conversion follows it)
    not_exportable_with: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def runtime(self) -> str:
        """What runs its variants: "torch", or "onnxruntime" when it converts them to an ONNX graph."""
        return "torch" if self.onnx_convert is None else "onnxruntime"

    def parse_level(self, raw: Any, key: str) -> Level | None:
        if self.level is None:
            if raw is not None:
                raise ConfigError(key, f"method '{self.name}' takes no level")
            return None
        if raw is None:
            raise ConfigError(key, f"method '{self.name}' needs levels ({self.level.describe})")
        return self.level.parse(raw, key)

    def resolve_params(self, given: dict[str, Any] | None, key: str) -> Params:
        """The defaults with ``given`` (a config's or a recipe's ``params``) replacing them, checked; errors
        name ``key`` (``compression[0].params``) and the parameter."""
        given = dict(given or {})
        known = self.params.names()
        for name in sorted(set(given) - set(known)):
            raise ConfigError(f"{key}.{name}", f"method '{self.name}' has no parameter {name!r} "
                                               f"(parameters: {', '.join(sorted(known)) or 'none'})")
        try:
            return dataclasses.replace(self.params, **given)
        except ParamError as error:
            raise ConfigError(f"{key}.{error.field}", str(error)) from None


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


# The modules that implement the methods (with torch); the catalogue names their functions.
FAMILY_MODULES = ("quantization", "pruning", "sparsity", "structured", "downsampling", "depth", "distillation")


@dataclasses.dataclass(frozen=True)
class Implementation:
    """A method's function, named by family module and attribute and imported when first called: building
    the job grid reads the records only, so a dry run or a cluster job's parse never imports torch."""

    module: str  # one of FAMILY_MODULES
    function: str

    def __post_init__(self) -> None:
        if self.module not in FAMILY_MODULES:
            raise ValueError(f"{self.module!r} is not a method family module ({', '.join(FAMILY_MODULES)})")

    def resolve(self) -> Callable[..., Any]:
        import importlib

        module = importlib.import_module(f"{__package__}.{self.module}")
        try:
            return getattr(module, self.function)
        except AttributeError:
            raise AttributeError(f"{module.__name__} has no {self.function!r}, which the method catalogue "
                                 "(compression/methods.py) names") from None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)


def _load_builtin_methods() -> None:
    # The catalogue registers every built-in method on import; it imports no torch.
    import importlib

    importlib.import_module(f"{__package__}.methods")


# ----------------------------------------------------------------------------------------------
# Variants


def _frozen(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))


@dataclasses.dataclass(frozen=True)
class Step:
    method: str
    level: Level | None = None
    params: tuple[tuple[str, Any], ...] = ()  # resolved: defaults filled in
    name: str | None = None  # the config's ``name``: tells apart entries of one method with other params

    @property
    def id(self) -> str:
        base = self.name or self.method
        return base if self.level is None else step_key(base, self.level)

    @property
    def param_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.params}

    @property
    def typed_params(self) -> Params:
        """The method's parameter dataclass for this step (what its functions receive)."""
        return get(self.method).resolve_params(self.param_dict, f"{self.id}.params")


@dataclasses.dataclass(frozen=True)
class Recovery:
    """Fine-tuning after the steps are prepared (masks and fake quantizers stay in place)."""

    steps: int
    learning_rate: float | None = None  # None: a tenth of config.finetune.learning_rate
    warmup_steps: int | None = None  # None: a tenth of the steps

    @property
    def token(self) -> str:
        return f"ft{self.steps}"


@dataclasses.dataclass(frozen=True)
class Variant:
    """One compressed model: steps applied in order, optionally with recovery fine-tuning."""

    steps: tuple[Step, ...]
    recovery: Recovery | None = None

    @classmethod
    def of(cls, method: str, level: Level | None = None, params: dict[str, Any] | None = None,
           recovery_steps: int = 0) -> "Variant":
        """A one-step variant with the method's default parameters filled in (tests, benchmarks)."""
        resolved = get(method).resolve_params(params, "compression.params")
        return cls((Step(method, level, _frozen(resolved.to_json())),), Recovery(recovery_steps) if recovery_steps else None)

    @property
    def id(self) -> str:
        return "+".join([s.id for s in self.steps] + ([self.recovery.token] if self.recovery else []))

    @property
    def method(self) -> str:
        return "+".join(s.method for s in self.steps)

    @property
    def level(self) -> Level | None:
        """The first level in the chain: what a figure's x axis shows."""
        return next((s.level for s in self.steps if s.level is not None), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": [{"method": s.method, "level": s.level, "params": s.param_dict, "name": s.name} for s in self.steps],
            "recovery": dataclasses.asdict(self.recovery) if self.recovery else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Variant":
        steps = tuple(Step(s["method"], s["level"], _frozen(s["params"]), s.get("name")) for s in data["steps"])
        return cls(steps, Recovery(**data["recovery"]) if data.get("recovery") else None)

    @property
    def trains(self) -> bool:
        """Whether making it runs the training loop (which evaluates on the dev split)."""
        return self.recovery is not None or any(get(s.method).train is not None for s in self.steps)

    @property
    def needs_training_data(self) -> bool:
        return self.recovery is not None or any(get(s.method).needs_data for s in self.steps)

    @property
    def cpu_only(self) -> bool:
        """Whether one of its steps has CPU kernels only (a GPU would sit idle while it decodes)."""
        return any(get(s.method).cpu_only for s in self.steps)

    @property
    def param_schemas(self) -> list[dict[str, Any]]:
        """Per step, the type and version of its parameter dataclass (card.json)."""
        return [get(s.method).params.schema() for s in self.steps]

    @property
    def versions(self) -> dict[str, int]:
        """Each step method's implementation version (card.json; the compress rule's params, so a new one rebuilds)."""
        return {s.method: get(s.method).version for s in self.steps}

    @property
    def runtime(self) -> str:
        """What runs it: "torch", or "onnxruntime" when its last step converts it to an ONNX graph."""
        return get(self.steps[-1].method).runtime


def _step(entry: dict[str, Any], level: Any, key: str) -> Step:
    method = get(entry.get("method", ""), f"{key}.method")
    parsed = method.parse_level(level, f"{key}.levels")
    params = method.resolve_params(entry.get("params"), f"{key}.params")
    name = entry.get("name")
    if name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)):
        raise ConfigError(f"{key}.name", f"{name!r}: use letters, digits, '_', '.', '-' (it names files)")
    return Step(method.name, parsed, _frozen(params.to_json()), name)


def _recovery(entry: dict[str, Any] | None, key: str) -> Recovery | None:
    if not entry:
        return None
    unknown = sorted(set(entry) - {"steps", "learning_rate", "warmup_steps"})
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", "unknown key (recovery takes steps, learning_rate, warmup_steps)")
    steps = require_whole(entry.get("steps"), f"{key}.steps")
    return Recovery(steps, entry.get("learning_rate"), entry.get("warmup_steps"))


def _check_chain(steps: tuple[Step, ...], recovery: Recovery | None, key: str) -> None:
    methods = [get(s.method) for s in steps]
    for position, method in enumerate(methods[1:], start=1):
        if method.reshapes:
            # Earlier steps record per-module state (masks, bit widths, kept units) that a reshape would orphan.
            raise ConfigError(f"{key}.then[{position - 1}]", f"'{method.name}' changes the model's modules and must "
                                                            "be the first step of a chain")
    for position, method in enumerate(methods[:-1]):
        if method.training == "never":
            raise ConfigError(f"{key}.then", f"'{method.name}' converts the model for deployment and must be the "
                                             "last step of a chain")
    if methods[-1].runtime == "onnxruntime":
        for step, method in zip(steps[:-1], methods[:-1]):
            blocking = {k: v for k, v in method.not_exportable_with.items() if step.param_dict.get(k) == v}
            if blocking:
                raise ConfigError(f"{key}.then", f"'{methods[-1].name}' runs an ONNX graph, and '{method.name}' with "
                                                 f"{blocking} has no ONNX export (see docs/compression.md)")
    trained_by_itself = [m.name for m in methods if m.train is not None]
    if len(trained_by_itself) > 1:
        raise ConfigError(key, f"{', '.join(trained_by_itself)} each bring their own training: chain at most one")
    needs = [m.name for m in methods if m.training == "required"]
    if needs and recovery is None:
        raise ConfigError(f"{key}.recovery", f"'{needs[0]}' only makes sense with training: give recovery.steps")
    if recovery is not None and all(m.training == "never" for m in methods):
        raise ConfigError(f"{key}.recovery", f"{'+'.join(m.name for m in methods)} has nothing to train")


def variants_from_config(entries: list[dict[str, Any]]) -> list[Variant]:
    """Expand ``config.compression`` into variants.

    Each entry is ``{method, name?, levels?, params?, then?, recovery?}``; ``then`` is a list of
    further ``{method, level?, params?}`` steps applied after every level of the first one; ``name``
    replaces the method name in the variant id.
    """
    if not entries:
        raise ConfigError("compression", "the variant list is empty; give at least {method: none}")
    variants: list[Variant] = []
    for index, entry in enumerate(entries):
        key = f"compression[{index}]"
        method = get(entry.get("method", ""), f"{key}.method")
        levels = entry.get("levels")
        if method.level is not None and not levels:
            raise ConfigError(f"{key}.levels", f"method '{method.name}' needs a non-empty list of levels "
                                               f"({method.level.describe})")
        tail = tuple(
            _step(then, then.get("level"), f"{key}.then[{i}]") for i, then in enumerate(entry.get("then") or [])
        )
        recovery = _recovery(entry.get("recovery"), f"{key}.recovery")
        for level in levels or [None]:
            steps = (_step(entry, level, key), *tail)
            _check_chain(steps, recovery, key)
            variants.append(Variant(steps, recovery))
    ids = [v.id for v in variants]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ConfigError("compression", f"variants listed twice: {', '.join(repeated)} (entries of one method with "
                                         "different params need distinct `name`s)")
    return variants
