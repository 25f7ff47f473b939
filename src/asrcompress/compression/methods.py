"""The catalogue of built-in compression methods: light records, no torch.

Building the job grid (every dry run, every cluster job's workflow parse) needs to know each method's
name, family, levels, parameters and config checks, and whether it trains, calibrates or has CPU kernels
only; it never runs one. So the records live here, torch-free, and name their functions by module and
attribute (:class:`~.registry.Implementation`): the family module, with torch, is imported only when a
job prepares, trains, finalizes or loads a variant.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .registry import Implementation, Method, Params, ParamError, fraction, integer, nm_pattern, register

# ----------------------------------------------------------------------------------------------
# The values the family modules share with their config checks

DOWNSAMPLING_KINDS = ("signal", "pool", "conv")
DOWNSAMPLING_FACTORS = (2, 3, 4)
KEEP = ("first", "last")  # layer_removal keeps the first or the last k layers
STRUCTURE_KINDS = ("conv", "head", "ffn")
BUDGETS = ("params", "macs")
MAGNITUDES = ("l2", "l1")
STUDENT_SHAPES = ("deep_thin", "shallow_wide")
FRONTENDS = ("cnn", "fbank")
LOSSES = ("reg", "reg+disc")
PREDICTIONS = ("auto", "last", "layerwise")
CTC_HEADS = ("composed", "fresh")
SIZE_PARAMS = ("layers", "hidden_size", "intermediate_size", "heads")


def _as_given(value: Any) -> Any:
    """A value as the config wrote it, for messages (YAML lists arrive as tuples here)."""
    return list(value) if isinstance(value, tuple) else value


def _positive_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0


# ----------------------------------------------------------------------------------------------
# Parameters (checked when a config is parsed, so the messages name the config key before any job starts)


@dataclasses.dataclass(frozen=True)
class TargetParams(Params):
    """Which weights a pruning or quantization method touches: nn.Linear, and Conv1d with ``include_conv``,
    less those whose module name contains one of ``exclude``."""

    include_conv: bool = False
    exclude: tuple[str, ...] = ()

    def check(self) -> None:
        self.flag("include_conv")
        if not isinstance(self.exclude, tuple) or not all(isinstance(s, str) and s for s in self.exclude):
            raise ParamError("exclude", f"must be a list of module-name substrings, got {_as_given(self.exclude)!r}")


@dataclasses.dataclass(frozen=True)
class CalibrationParams(Params):
    """Training utterances a conversion observes (static int8 activation ranges)."""

    calibration_utterances: int = 32

    def check(self) -> None:
        self.whole("calibration_utterances")


@dataclasses.dataclass(frozen=True)
class DownsamplingParams(Params):
    kind: str = "pool"  # signal | pool | conv

    def check(self) -> None:
        self.choice("kind", DOWNSAMPLING_KINDS)


@dataclasses.dataclass(frozen=True)
class LayerRemovalParams(Params):
    keep: str = "first"  # the first or the last k layers

    def check(self) -> None:
        self.choice("keep", KEEP)


@dataclasses.dataclass(frozen=True)
class StructuredParams(Params):
    """What the structured methods share: the structures they remove and the budget their level is a fraction of."""

    budget: str = "macs"
    prune: tuple[str, ...] = ("conv", "head", "ffn")

    def check(self) -> None:
        self.choice("budget", BUDGETS)
        if not isinstance(self.prune, tuple) or not self.prune:
            raise ParamError("prune", f"give a non-empty list of structure kinds ({', '.join(STRUCTURE_KINDS)})")
        for kind in self.prune:
            if kind not in STRUCTURE_KINDS:
                raise ParamError("prune", f"unknown structure kind {kind!r} (kinds: {', '.join(STRUCTURE_KINDS)})")
        if len(set(self.prune)) != len(self.prune):
            raise ParamError("prune", f"{list(self.prune)} lists a kind twice")


@dataclasses.dataclass(frozen=True)
class MagnitudeStructuredParams(StructuredParams):
    importance: str = "l2"

    def check(self) -> None:
        super().check()
        hint = " (Taylor importance reads calibration data: use method structured_taylor)" \
            if self.importance == "taylor" else ""
        self.choice("importance", MAGNITUDES, hint)


@dataclasses.dataclass(frozen=True)
class TaylorParams(StructuredParams):
    calibration_utterances: int = 16

    def check(self) -> None:
        super().check()
        self.whole("calibration_utterances")


@dataclasses.dataclass(frozen=True)
class L0Params(StructuredParams):
    reg_learning_rate: float = 0.02  # of the Lagrange multipliers
    target_ramp: float = 0.1  # fraction of the steps over which the target sparsity rises to the level

    def check(self) -> None:
        super().check()
        if not _positive_number(self.reg_learning_rate):
            raise ParamError("reg_learning_rate", f"must be a positive number, got {self.reg_learning_rate!r}")
        ramp = self.target_ramp
        if isinstance(ramp, bool) or not isinstance(ramp, (int, float)) or not 0 <= ramp < 1:
            raise ParamError("target_ramp", f"must be a fraction of the steps in [0, 1), got {ramp!r}")


@dataclasses.dataclass(frozen=True)
class DistillationParams(Params):
    """The student and its distillation; sizes against the teacher's depth and width are checked at prepare."""

    shape: str = "shallow_wide"
    frontend: str = "cnn"
    layers: int | None = None  # None: 2 (shallow_wide) or the teacher's depth (deep_thin)
    hidden_size: int | None = None  # None: the teacher's width (shallow_wide) or half of it (deep_thin)
    intermediate_size: int | None = None  # None: the teacher's FFN/width ratio times the student's width
    heads: int | None = None  # None: the teacher's head size kept
    targets: tuple[int, ...] | None = None  # teacher hidden-state indices (0: before the first layer); None: L/3, 2L/3, L
    prediction: str = "auto"  # auto: last for shallow_wide, layerwise for deep_thin
    loss: str = "reg"
    cos_weight: float = 1.0  # DistilHuBERT's lambda
    disc_weight: float = 1.0
    disc_temperature: float = 1.0
    distill_steps: int = 200
    distill_learning_rate: float | None = None  # None: the base recipe's learning rate (the student starts untrained)
    freeze_cnn: bool = False  # the copied CNN frontend stays fixed (no effect with fbank)
    ctc_head: str = "composed"  # composed: teacher CTC head after the last-layer prediction head; fresh: random

    def check(self) -> None:
        for name, allowed in (("shape", STUDENT_SHAPES), ("frontend", FRONTENDS), ("loss", LOSSES),
                              ("prediction", PREDICTIONS), ("ctc_head", CTC_HEADS)):
            self.choice(name, allowed)
        for name in SIZE_PARAMS:
            self.whole(name, optional=True)
        self.whole("distill_steps")
        if self.hidden_size and self.heads and self.hidden_size % self.heads:
            raise ParamError("heads", f"{self.heads} heads do not divide hidden_size {self.hidden_size}")
        targets = self.targets
        if targets is not None and (not isinstance(targets, tuple) or not targets or not all(
                isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in targets)):
            raise ParamError("targets", f"must be a non-empty list of teacher layer numbers, got {_as_given(targets)!r}")
        for name in ("cos_weight", "disc_weight", "disc_temperature", "distill_learning_rate"):
            value = getattr(self, name)
            if value is None and name == "distill_learning_rate":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 \
                    or (value == 0 and name in ("disc_temperature", "distill_learning_rate")):
                raise ParamError(name, f"must be a finite number > 0 (>= 0 for weights), got {value!r}")
        self.flag("freeze_cnn")


# ----------------------------------------------------------------------------------------------
# The records


def _in(module: str):
    """``_in("pruning").global_magnitude``: that function of the family module, imported when called."""

    class Namespace:
        def __getattr__(self, function: str) -> Implementation:
            return Implementation(module, function)

    return Namespace()


quantization, pruning, sparsity = _in("quantization"), _in("pruning"), _in("sparsity")
structured, downsampling, depth, distillation = _in("structured"), _in("downsampling"), _in("depth"), _in("distillation")

register(Method(name="none", description="the fine-tuned baseline, unchanged (recovery steps make it a "
                                         "'more training' control)", family="baseline"))

for _name in ("fp16", "bf16"):
    register(Method(
        name=_name,
        description=f"the whole model cast to {_name} (CPU kernels exist in torch 2.9.1; decoding casts the "
                    "input waveform to the model's dtype)",
        family="quantization",
        # Also the restructure: the saved state dict holds half-size tensors, and loading it into a float32
        # model would silently upcast them.
        finalize=Implementation("quantization", f"to_{_name}"),
        restructure=Implementation("quantization", f"to_{_name}"),
        training="never",
    ))

# The int8 conversions run on ONNX Runtime (compression/quantization.py says why): the chain's float model is
# exported, then quantized as a graph; the variant decodes and is costed as that graph, on the CPU.
register(Method(
    name="dynamic_int8",
    description="PTQ (E1): dynamic int8 of every Linear, int8 weights per tensor, activations quantized per call "
                "(as torch's quantize_dynamic), on ONNX Runtime",
    family="quantization",
    onnx_convert=quantization.ort_dynamic_int8,
    version=2,  # 1: torch.ao quantize_dynamic (fbgemm), deprecated by torch
    training="never",
    cpu_only=True,
))

register(Method(
    name="static_int8",
    description="PTQ (E1): static int8 of every Linear, int8 weights per output channel, uint8 activation ranges "
                "calibrated on training utterances, on ONNX Runtime (QDQ)",
    family="quantization",
    onnx_convert=quantization.ort_static_int8,
    version=2,  # 1: torch.ao eager static quantization (x86 qconfig), deprecated by torch
    params=CalibrationParams(),
    training="never",
    needs_data=True,
    cpu_only=True,
))

register(Method(
    name="ort_int8",
    description="ONNX Runtime's recommended dynamic int8: int8 weights per output channel, activations quantized per "
                "call; chainable after any float method (the deployable int8 number)",
    family="quantization",
    onnx_convert=quantization.ort_int8,
    training="never",
    cpu_only=True,
))

register(Method(
    name="qat",
    description="weight-only per-output-channel symmetric b-bit quantization with a straight-through "
                "estimator (USM-Lite); round-to-nearest PTQ without recovery",
    family="quantization",
    prepare=quantization.prepare_qat,
    finalize=quantization.finalize_qat,
    accelerate=quantization.accelerate_qat,
    level=integer(choices=(2, 4, 8)),
    # The studies do not record which layers USM-Lite keeps in float. Default: the CTC output
    # projection (hidden x vocab, ~0.01 % of the weights), whose errors land on the logits
    # directly; the CNN frontend stays float as in E1's int8 (``include_conv`` to quantize it).
    params=TargetParams(exclude=("lm_head",)),
    training="optional",
))

register(Method(
    name="magnitude",
    description="global L1 unstructured pruning of nn.Linear weights (masks kept during recovery)",
    family="pruning",
    prepare=pruning.global_magnitude,
    finalize=pruning.remove_masks,
    level=fraction(0.0, 1.0),
    # E1 (Pimentel et al.) prunes globally over the model's linear layers: the CTC head included
    # by default, unlike nm_sparsity; `exclude: [lm_head]` spares it.
    params=TargetParams(),
))

register(Method(
    name="nm_sparsity",
    description="N:M semi-structured sparsity of nn.Linear weights along the input dimension "
                "(masks fixed at prepare and kept during recovery; 2:4 sparse kernels on CUDA)",
    family="sparsity",
    prepare=sparsity.nm_prepare,
    finalize=pruning.remove_masks,
    level=nm_pattern(),
    # The CTC output layer (vocab x hidden) is ~0.01 % of the weights: sparsifying it saves
    # nothing while every logit depends on it directly (the studies record no choice for USM-Lite).
    params=TargetParams(exclude=("lm_head",)),
    accelerate=sparsity.semi_structured,
))

def _register_structured(name: str, description: str, params: StructuredParams, **fields: Any) -> None:
    """The three share what makes them structured: a budget fraction, the surgery, and its replay on load."""
    register(Method(name=name, description=description, family="structured", reshapes=True,
                    restructure=structured.rebuild, level=fraction(0.0, 1.0), params=params, **fields))


_register_structured(
    "structured",
    "structured pruning of CNN channels, attention heads and FFN units by weight magnitude, greedy under a "
    "parameter or MAC budget; really removed (Peng et al. 2023)",
    MagnitudeStructuredParams(), prepare=structured.prune_by_importance,
)
_register_structured(
    "structured_taylor",
    "structured pruning as `structured`, ranked by first-order Taylor importance |w * grad| on calibration utterances",
    TaylorParams(), prepare=structured.prune_by_taylor, needs_data=True,
)
_register_structured(
    "structured_l0",
    "HJ-Pruning / DPHuBERT: HardConcrete L0 gates on CNN channels, heads and FFN units learned during recovery "
    "with a Lagrangian budget, then removed",
    L0Params(), prepare=structured.add_gates, train=structured.learn_gates,
    finalize=structured.remove_gates, training="required",
)

register(Method(
    name="downsampling",
    reshapes=True,
    description="frame rate / level: waveform resampling (signal), average pooling (pool) or a learned "
                "strided conv (conv) before the Transformer, as Zaiem et al.",
    family="downsampling",
    prepare=downsampling.downsample,
    finalize=downsampling.record_alignment,
    restructure=downsampling.downsample,
    level=integer(choices=DOWNSAMPLING_FACTORS),
    params=DownsamplingParams(),
    training="required",
))

register(Method(
    name="layer_removal",
    reshapes=True,
    description="keep the first (or last) k Transformer layers (level: layers kept), as Zaiem et al.",
    family="depth",
    prepare=depth.remove_layers,
    level=integer(1),
    params=LayerRemovalParams(),
))

register(Method(
    name="layerdrop",
    reshapes=True,
    description="recovery with LayerDrop at rate p, then keep round(L(1-p)) evenly spaced layers (Fan et al.)",
    family="depth",
    prepare=depth.start_layerdrop,
    finalize=depth.prune_evenly,
    level=fraction(0.0, 1.0),
))

register(Method(
    name="distillation",
    reshapes=True,
    description="a smaller student (deep_thin | shallow_wide; CNN or Fbank frontend) regresses the teacher's "
                "hidden states (L1 + cosine, optionally + a discriminative KL), then learns CTC (recovery steps)",
    family="distillation",
    prepare=distillation.prepare_student,
    restructure=distillation.restructure_student,
    train=distillation.train_student,
    params=DistillationParams(),
    not_exportable_with={"frontend": "fbank"},  # torch's exporter has no STFT of complex type
    training="required",
    needs_data=True,
))
