"""The catalogue of built-in compression methods: light records, no torch.

Building the job grid (every dry run, every cluster job's workflow parse) needs to know each method's
name, family, levels, parameters and config checks, and whether it trains, calibrates or has CPU kernels
only; it never runs one. So the records live here, torch-free, and name their functions by module and
attribute (:class:`~.registry.Implementation`): the family module, with torch, is imported only when a
job prepares, trains, finalizes or loads a variant.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import ConfigError
from .registry import Implementation, Method, fraction, integer, nm_pattern, register, require_choice, require_whole

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

DISTILLATION_PARAMS: dict[str, Any] = {
    "shape": "shallow_wide",
    "frontend": "cnn",
    "layers": None,  # None: 2 (shallow_wide) or the teacher's depth (deep_thin)
    "hidden_size": None,  # None: the teacher's width (shallow_wide) or half of it (deep_thin)
    "intermediate_size": None,  # None: the teacher's FFN/width ratio times the student's width
    "heads": None,  # None: the teacher's head size kept
    "targets": None,  # teacher hidden-state indices (0: before the first layer); None: L/3, 2L/3, L
    "prediction": "auto",  # auto: last for shallow_wide, layerwise for deep_thin
    "loss": "reg",
    "cos_weight": 1.0,  # DistilHuBERT's lambda
    "disc_weight": 1.0,
    "disc_temperature": 1.0,
    "distill_steps": 200,
    "distill_learning_rate": None,  # None: the base recipe's learning rate (the student starts untrained)
    "freeze_cnn": False,  # the copied CNN frontend stays fixed (no effect with fbank)
    "ctc_head": "composed",  # composed: teacher CTC head after the last-layer prediction head; fresh: random
}


# ----------------------------------------------------------------------------------------------
# Config checks (run at parse time, so the messages name the config key before any job starts)


def check_target_params(_level: Any, params: dict[str, Any], key: str) -> None:
    """The parameters that choose the pruned or quantized weights (``include_conv``, ``exclude``)."""
    if not isinstance(params["include_conv"], bool):
        raise ConfigError(f"{key}.params.include_conv", f"must be true or false, got {params['include_conv']!r}")
    exclude = params["exclude"]
    if not isinstance(exclude, (list, tuple)) or not all(isinstance(s, str) and s for s in exclude):
        raise ConfigError(f"{key}.params.exclude", f"must be a list of module-name substrings, got {exclude!r}")


def check_static_int8(_level: Any, params: dict[str, Any], key: str) -> None:
    require_whole(params["calibration_utterances"], f"{key}.params.calibration_utterances")


def check_downsampling(_level: Any, params: dict[str, Any], key: str) -> None:
    require_choice(params["kind"], DOWNSAMPLING_KINDS, f"{key}.params.kind")


def check_layer_removal(_level: Any, params: dict[str, Any], key: str) -> None:
    require_choice(params["keep"], KEEP, f"{key}.params.keep")


def _check_kinds_and_budget(params: dict[str, Any], key: str) -> None:
    require_choice(params["budget"], BUDGETS, f"{key}.params.budget")
    prune = params["prune"]
    if isinstance(prune, str) or not isinstance(prune, (list, tuple)) or not prune:
        raise ConfigError(f"{key}.params.prune",
                          f"give a non-empty list of structure kinds ({', '.join(STRUCTURE_KINDS)})")
    for kind in prune:
        if kind not in STRUCTURE_KINDS:
            raise ConfigError(f"{key}.params.prune",
                              f"unknown structure kind {kind!r} (kinds: {', '.join(STRUCTURE_KINDS)})")
    if len(set(prune)) != len(prune):
        raise ConfigError(f"{key}.params.prune", f"{list(prune)} lists a kind twice")


def check_structured(_level: Any, params: dict[str, Any], key: str) -> None:
    _check_kinds_and_budget(params, key)
    hint = " (Taylor importance reads calibration data: use method structured_taylor)" \
        if params["importance"] == "taylor" else ""
    require_choice(params["importance"], MAGNITUDES, f"{key}.params.importance", hint)


def check_taylor(_level: Any, params: dict[str, Any], key: str) -> None:
    _check_kinds_and_budget(params, key)
    require_whole(params["calibration_utterances"], f"{key}.params.calibration_utterances")


def check_l0(_level: Any, params: dict[str, Any], key: str) -> None:
    _check_kinds_and_budget(params, key)
    rate = params["reg_learning_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
        raise ConfigError(f"{key}.params.reg_learning_rate", f"must be a positive number, got {rate!r}")
    ramp = params["target_ramp"]
    if isinstance(ramp, bool) or not isinstance(ramp, (int, float)) or not 0 <= ramp < 1:
        raise ConfigError(f"{key}.params.target_ramp", f"must be a fraction of the steps in [0, 1), got {ramp!r}")


def check_distillation(_level: Any, params: dict[str, Any], key: str) -> None:
    """What can be checked without the teacher (sizes against its depth and width are checked at prepare)."""
    for name, allowed in (("shape", STUDENT_SHAPES), ("frontend", FRONTENDS), ("loss", LOSSES),
                          ("prediction", PREDICTIONS), ("ctc_head", CTC_HEADS)):
        require_choice(params[name], allowed, f"{key}.params.{name}")
    for name in (*SIZE_PARAMS, "distill_steps"):
        if params[name] is not None:
            require_whole(params[name], f"{key}.params.{name}")
    if params["hidden_size"] and params["heads"] and params["hidden_size"] % params["heads"]:
        raise ConfigError(f"{key}.params.heads", f"{params['heads']} heads do not divide hidden_size "
                                                 f"{params['hidden_size']}")
    targets = params["targets"]
    if targets is not None and (not isinstance(targets, (list, tuple)) or not targets
                                or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in targets)):
        raise ConfigError(f"{key}.params.targets",
                          f"must be a non-empty list of teacher layer numbers, got {targets!r}")
    for name in ("cos_weight", "disc_weight", "disc_temperature", "distill_learning_rate"):
        value = params[name]
        if value is None and name == "distill_learning_rate":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 \
                or (value == 0 and name in ("disc_temperature", "distill_learning_rate")):
            raise ConfigError(f"{key}.params.{name}", f"must be a finite number > 0 (>= 0 for weights), got {value!r}")
    if not isinstance(params["freeze_cnn"], bool):
        raise ConfigError(f"{key}.params.freeze_cnn", f"must be true or false, got {params['freeze_cnn']!r}")


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
    params={"calibration_utterances": 32},
    check=check_static_int8,
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
    params={"include_conv": False, "exclude": ["lm_head"]},
    check=check_target_params,
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
    params={"include_conv": False, "exclude": []},
    check=check_target_params,
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
    params={"include_conv": False, "exclude": ["lm_head"]},
    check=check_target_params,
    accelerate=sparsity.semi_structured,
))

_STRUCTURED_COMMON = {"budget": "macs", "prune": ["conv", "head", "ffn"]}


def _register_structured(name: str, description: str, params: dict[str, Any], **fields: Any) -> None:
    """The three share what makes them structured: a budget fraction, the surgery, and its replay on load."""
    register(Method(name=name, description=description, family="structured", reshapes=True,
                    restructure=structured.rebuild, level=fraction(0.0, 1.0),
                    params={**_STRUCTURED_COMMON, **params}, **fields))


_register_structured(
    "structured",
    "structured pruning of CNN channels, attention heads and FFN units by weight magnitude, greedy under a "
    "parameter or MAC budget; really removed (Peng et al. 2023)",
    {"importance": "l2"}, prepare=structured.prune_by_importance, check=check_structured,
)
_register_structured(
    "structured_taylor",
    "structured pruning as `structured`, ranked by first-order Taylor importance |w * grad| on calibration utterances",
    {"calibration_utterances": 16}, prepare=structured.prune_by_taylor, needs_data=True, check=check_taylor,
)
_register_structured(
    "structured_l0",
    "HJ-Pruning / DPHuBERT: HardConcrete L0 gates on CNN channels, heads and FFN units learned during recovery "
    "with a Lagrangian budget, then removed",
    {"reg_learning_rate": 0.02, "target_ramp": 0.1}, prepare=structured.add_gates, train=structured.learn_gates,
    finalize=structured.remove_gates, training="required", check=check_l0,
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
    params={"kind": "pool"},
    training="required",
    check=check_downsampling,
))

register(Method(
    name="layer_removal",
    reshapes=True,
    description="keep the first (or last) k Transformer layers (level: layers kept), as Zaiem et al.",
    family="depth",
    prepare=depth.remove_layers,
    level=integer(1),
    params={"keep": "first"},
    check=check_layer_removal,
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
    params=DISTILLATION_PARAMS,
    not_exportable_with={"frontend": "fbank"},  # torch's exporter has no STFT of complex type
    training="required",
    needs_data=True,
    check=check_distillation,
))
