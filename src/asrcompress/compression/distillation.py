"""Teacher-student distillation (Wang et al. 2022, arXiv 2210.15631; DistilHuBERT, Chang et al. 2022).

A smaller student of the teacher's own architecture class (so it keeps the CTC interface and the
store's state-dict path) first regresses the teacher's hidden states through linear prediction
heads, then learns CTC on the labelled data:

* shape ``shallow_wide`` is DistilHuBERT: 2 layers at the teacher's width, every head on the last
  layer; ``deep_thin`` keeps the teacher's depth at half its width, each head on the student
  layer at the same relative depth as its teacher layer (layer-to-layer).
* frontend ``cnn`` copies the teacher's waveform CNN; ``fbank`` replaces it by 80 log-Mel
  filterbanks (25 ms / 10 ms) stacked to the CNN's 20 ms rate, then the usual layer norm and
  linear projection (Wang et al.'s frontend distillation: fewer parameters, cheaper).
* loss ``reg`` is DistilHuBERT's L1 - log sigmoid(cosine); ``reg+disc`` adds a discriminative
  term (see :func:`distillation_loss`).

The student's config keeps the teacher's ``conv_kernel``/``conv_stride``, so transformers' own
``_get_feat_extract_output_lengths`` gives the teacher's frame count for either frontend; the
fbank frontend produces exactly that many frames.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F

from ..cost import conv_lengths, count_parameters
from ..errors import ConfigError
from ..training import TrainConfig, TrainHooks
from .context import CompressionContext
from .methods import DistillationParams
from .registry import Recovery

FBANK_BINS = 80


# ----------------------------------------------------------------------------------------------
# The student's shape


def default_targets(teacher_layers: int) -> list[int]:
    """DistilHuBERT's spread: the teacher's layers at a third, two thirds and the top (4, 8, 12 of 12)."""
    return sorted({max(1, round(teacher_layers * k / 3)) for k in (1, 2, 3)})


def _heads_for(hidden: int, head_dim: int) -> int:
    """The most heads of about ``head_dim`` that divide ``hidden``."""
    heads = max(1, hidden // head_dim)
    while hidden % heads:
        heads -= 1
    return heads


@dataclasses.dataclass(frozen=True)
class StudentSizes:
    layers: int
    hidden_size: int
    intermediate_size: int
    heads: int

    @classmethod
    def from_params(cls, teacher: Any, params: DistillationParams) -> "StudentSizes":
        """Explicit sizes win; the rest scale from the teacher's config."""
        deep = params.shape == "deep_thin"
        layers = params.layers or (teacher.num_hidden_layers if deep else 2)
        hidden = params.hidden_size or (teacher.hidden_size // 2 if deep else teacher.hidden_size)
        ffn = params.intermediate_size or hidden * teacher.intermediate_size // teacher.hidden_size
        heads = params.heads or _heads_for(hidden, teacher.hidden_size // teacher.num_attention_heads)
        if hidden % heads:
            raise ConfigError("distillation.params.heads", f"{heads} heads do not divide hidden size {hidden}")
        return cls(layers, hidden, ffn, heads)


def student_config(teacher: Any, sizes: StudentSizes, frontend: dict[str, Any]) -> dict[str, Any]:
    """The teacher's config with the student's sizes: dropouts, CTC settings and conv geometry kept."""
    config = teacher.to_dict()
    config.update(
        num_hidden_layers=sizes.layers, hidden_size=sizes.hidden_size, intermediate_size=sizes.intermediate_size,
        num_attention_heads=sizes.heads, output_hidden_size=sizes.hidden_size,
        # The grouped positional convolution needs groups dividing the width.
        num_conv_pos_embedding_groups=math.gcd(teacher.num_conv_pos_embedding_groups, sizes.hidden_size),
        layerdrop=0.0,  # dropping one of a 2-layer student's layers removes half the model
        architectures=None, _name_or_path="",
    )
    if frontend["type"] == "fbank":
        # The feature projection reads conv_dim[-1]: make it the stacked filterbank size.
        config["conv_dim"] = [frontend["channels"]] * len(config["conv_kernel"])
    return config


def fbank_frontend_meta(teacher: Any, sample_rate: int) -> dict[str, Any]:
    """Filterbank settings: a 10 ms hop with ``stack`` frames per teacher frame (2 at 16 kHz, stride 320)."""
    stride = math.prod(teacher.conv_stride)
    hop = sample_rate // 100
    if stride % hop:
        raise ConfigError("distillation.params.frontend", f"the teacher's frame stride ({stride} samples) is not a "
                                                          f"multiple of a 10 ms hop ({hop} samples)")
    stack = stride // hop
    return {"type": "fbank", "sample_rate": sample_rate, "window": round(0.025 * sample_rate), "hop": hop,
            "stack": stack, "bins": FBANK_BINS, "channels": FBANK_BINS * stack,
            "conv_kernel": list(teacher.conv_kernel), "conv_stride": list(teacher.conv_stride)}


# ----------------------------------------------------------------------------------------------
# The filterbank frontend


class FbankFrontend(torch.nn.Module):
    """Log-Mel filterbanks with ``stack`` consecutive 10 ms frames concatenated per output frame.

    It replaces the CNN feature encoder and returns what it returned, (batch, channels, frames),
    with the CNN's frame count for the input length, so attention masks and CTC lengths computed by
    ``_get_feat_extract_output_lengths`` stay right. Output frame j covers samples
    [j * stride, j * stride + window + (stack - 1) * hop), next to the CNN's receptive field; the
    input is zero-padded at the end when the last frames need it (as batch padding is).
    The window and the Mel matrix are not persistent buffers: the state dict holds learned weights only.
    """

    def __init__(self, sample_rate: int, window: int, hop: int, stack: int, bins: int, conv_kernel: list[int],
                 conv_stride: list[int], **_: Any) -> None:
        import torchaudio.functional

        super().__init__()
        self.window_length, self.hop, self.stack, self.bins = window, hop, stack, bins
        self.conv_kernel, self.conv_stride = list(conv_kernel), list(conv_stride)
        self.n_fft = window  # the FFT spans exactly the window, so frame j starts at sample j * hop
        self.register_buffer("window", torch.hann_window(window), persistent=False)
        mel = torchaudio.functional.melscale_fbanks(self.n_fft // 2 + 1, 20.0, sample_rate / 2, bins, sample_rate,
                                                    norm=None, mel_scale="htk")
        self.register_buffer("mel", mel, persistent=False)
        self._requires_grad = False

    def _freeze_parameters(self) -> None:
        """``freeze_feature_encoder`` calls this; a filterbank has nothing to freeze."""

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        frames = conv_lengths(input_values.shape[-1], self.conv_kernel, self.conv_stride)[-1]
        needed = self.window_length + self.hop * (frames * self.stack - 1)
        audio = input_values.float()
        audio = F.pad(audio, (0, max(0, needed - audio.shape[-1])))[:, :needed]
        spectrum = torch.stft(audio, self.n_fft, self.hop, self.window_length, self.window, center=False,
                              return_complex=True).abs().pow(2)  # (batch, bins, 10 ms frames)
        logmel = torch.log(torch.matmul(spectrum.transpose(1, 2), self.mel).clamp_min(1e-10))
        stacked = logmel[:, : frames * self.stack].reshape(audio.shape[0], frames, self.stack * self.bins)
        return stacked.transpose(1, 2).to(input_values.dtype)


# ----------------------------------------------------------------------------------------------
# Building the student


def build_student(meta: dict[str, Any]) -> torch.nn.Module:
    """The student architecture (random weights) from a step's meta: used by prepare and restructure."""
    from transformers import AutoModelForCTC
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config_dict = meta["student_config"]
    config = CONFIG_MAPPING[config_dict["model_type"]].from_dict(config_dict)
    model = AutoModelForCTC.from_config(config)
    if meta["frontend"]["type"] == "fbank":
        model.base_model.feature_extractor = FbankFrontend(**meta["frontend"])
    return model


def copy_matching(student: torch.nn.Module, teacher: torch.nn.Module,
                  skip: tuple[str, ...] = ("lm_head.",)) -> list[str]:
    """Copy every teacher tensor whose name and shape the student shares (the CNN; at the teacher's width
    also the projection and first layers, as DistilHuBERT initialises). Returns the copied names."""
    source = teacher.state_dict()
    state = student.state_dict()
    copied = [k for k, v in state.items()
              if k in source and source[k].shape == v.shape and not k.startswith(skip)]
    student.load_state_dict({**state, **{k: source[k] for k in copied}})
    return copied


@dataclasses.dataclass(frozen=True)
class Targets:
    """Which teacher hidden state each prediction head regresses, from which student hidden state."""

    teacher: tuple[int, ...]
    student: tuple[int, ...]

    @classmethod
    def plan(cls, teacher_layers: int, student_layers: int, targets: list[int] | None, layerwise: bool) -> "Targets":
        chosen = list(targets) if targets else default_targets(teacher_layers)
        for t in chosen:
            if not 0 <= t <= teacher_layers:
                raise ConfigError("distillation.params.targets",
                                  f"teacher layer {t} outside 0..{teacher_layers} (0: before the first layer)")
        if not layerwise:
            return cls(tuple(chosen), (student_layers,) * len(chosen))
        # Same relative depth; the teacher's top layer maps onto the student's top layer.
        sources = [0 if t == 0 else max(1, round(t * student_layers / teacher_layers)) for t in chosen]
        return cls(tuple(chosen), tuple(sources))

    def head_for_top(self, teacher_layers: int, student_layers: int) -> int | None:
        """The head predicting the teacher's last layer from the student's last one (CTC head composition)."""
        return next((i for i, (t, s) in enumerate(zip(self.teacher, self.student))
                     if t == teacher_layers and s == student_layers), None)


def layer_states(model: torch.nn.Module, input_values: torch.Tensor,
                 attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """The input of the first layer, then each layer's output, the top one as the CTC head reads it.

    transformers gives pre-layer-norm models' (wav2vec2-large, WavLM) top layer before their final
    layer norm; the CTC head reads it after, and so do the top-layer target, the discriminative term
    and the composed CTC head here. Post-layer-norm models (HuBERT-base) have no final norm: no change.
    """
    out = model.base_model(input_values, attention_mask=attention_mask, output_hidden_states=True)
    return (*out.hidden_states[:-1], out.last_hidden_state)


class Distiller(torch.nn.Module):
    """The student plus one linear prediction head per target: what the distillation phase trains.

    ``config`` is the student's, so the training loop's checkpoint fingerprint sees the architecture.
    """

    def __init__(self, student: torch.nn.Module, teacher_hidden: int, sources: tuple[int, ...]) -> None:
        super().__init__()
        self.student = student
        self.sources = tuple(sources)
        self.heads = torch.nn.ModuleList(torch.nn.Linear(student.config.hidden_size, teacher_hidden) for _ in sources)

    @classmethod
    def from_meta(cls, student: torch.nn.Module, meta: dict[str, Any]) -> "Distiller":
        return cls(student, meta["teacher_hidden_size"], tuple(meta["targets"]["student"]))

    @property
    def config(self) -> Any:
        return self.student.config

    def freeze_feature_encoder(self) -> None:
        self.student.freeze_feature_encoder()

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        states = layer_states(self.student, input_values, attention_mask)
        return [head(states[s]) for head, s in zip(self.heads, self.sources)]


# ----------------------------------------------------------------------------------------------
# The loss


@dataclasses.dataclass(frozen=True)
class LossSettings:
    targets: tuple[int, ...]
    disc: bool = False
    cos_weight: float = 1.0
    disc_weight: float = 1.0
    disc_temperature: float = 1.0
    top: int | None = None  # index of the head whose prediction the discriminative term reads

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "LossSettings":
        return cls(tuple(meta["targets"]["teacher"]), meta["loss"] == "reg+disc", meta["cos_weight"],
                   meta["disc_weight"], meta["disc_temperature"], meta["top_head"])


@dataclasses.dataclass
class DistillLoss:
    total: torch.Tensor
    l1: float
    cos: float
    disc: float


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp_min(1)


def frame_mask(model: torch.nn.Module, attention_mask: torch.Tensor | None, batch: int, frames: int,
               device: torch.device) -> torch.Tensor:
    """1.0 on frames inside each utterance, 0.0 on frames computed from batch padding."""
    if attention_mask is None:
        return torch.ones(batch, frames, device=device)
    lengths = model._get_feat_extract_output_lengths(attention_mask.sum(-1)).to(device)
    return (torch.arange(frames, device=device)[None, :] < lengths[:, None]).float()


def distillation_loss(distiller: Distiller, teacher: torch.nn.Module, batch: dict[str, torch.Tensor],
                      settings: LossSettings) -> DistillLoss:
    """DistilHuBERT's regression loss, plus optionally a discriminative term, over unpadded frames.

    Regression, per head and frame: mean |pred - target| over dimensions - lambda log sigmoid(cos(pred, target)),
    averaged over frames and heads.

    Discriminative: Wang et al. compare the teacher's and the student's distributions over HuBERT's
    codewords (teacher projection and codebook applied to both). A CTC-fine-tuned teacher has no
    codebook any more; its CTC head is the classifier over discrete units it was fine-tuned into, so
    here the codewords are its output tokens: KL(p_teacher || p_student) with
    p = softmax(lm_head(h) / T), h the teacher's top layer and the student's prediction of it, the
    teacher's head frozen (gradients pass through it to the student only), times T^2 (Hinton).
    """
    inputs, attention = batch["input_values"], batch.get("attention_mask")
    with torch.no_grad():
        reference = layer_states(teacher, inputs, attention)
    predictions = distiller(inputs, attention)
    frames = reference[0].shape[1]
    if predictions[0].shape[1] != frames:
        raise RuntimeError(f"student gives {predictions[0].shape[1]} frames, the teacher {frames}")
    mask = frame_mask(teacher, attention, inputs.shape[0], frames, inputs.device)
    l1_terms, cos_terms = [], []
    for prediction, layer in zip(predictions, settings.targets):
        target = reference[layer]
        l1_terms.append(_masked_mean((prediction - target).abs().mean(-1), mask))
        cos_terms.append(_masked_mean(-F.logsigmoid(F.cosine_similarity(prediction, target, dim=-1)), mask))
    l1, cos = torch.stack(l1_terms).mean(), torch.stack(cos_terms).mean()
    total = l1 + settings.cos_weight * cos
    disc = torch.zeros((), device=inputs.device)
    if settings.disc:
        t = settings.disc_temperature
        teacher_log_p = F.log_softmax(teacher.lm_head(reference[-1]).float() / t, dim=-1)
        student_log_p = F.log_softmax(teacher.lm_head(predictions[settings.top]).float() / t, dim=-1)
        kl = (teacher_log_p.exp() * (teacher_log_p - student_log_p)).sum(-1)
        disc = _masked_mean(kl, mask) * t * t
        total = total + settings.disc_weight * disc
    return DistillLoss(total, float(l1), float(cos), float(disc))


# ----------------------------------------------------------------------------------------------
# The method


def _phase(ctx: CompressionContext, name: str) -> CompressionContext:
    """The context with its own checkpoint folder per phase, so a resumed job finds each phase's checkpoint,
    and the student's own ``freeze_cnn`` in place of the base recipe's ``freeze_feature_encoder``."""
    training = {**ctx.training, "freeze_feature_encoder": bool(ctx.meta.get("freeze_cnn", False))}
    return dataclasses.replace(ctx, checkpoint_dir=ctx.checkpoint_root / "distillation" / name, training=training)


def prepare_student(model: torch.nn.Module, _level: Any, params: DistillationParams,
                    ctx: CompressionContext) -> torch.nn.Module:
    """Build the student from the teacher's config, copy what it shares with the teacher, record the meta."""
    teacher = ctx.teacher()
    config = teacher.config
    sizes = StudentSizes.from_params(config, params)
    frontend = fbank_frontend_meta(config, ctx.sample_rate) if params.frontend == "fbank" else {"type": "cnn"}
    prediction = params.prediction
    layerwise = prediction == "layerwise" or (prediction == "auto" and params.shape == "deep_thin")
    targets = Targets.plan(config.num_hidden_layers, sizes.layers, params.targets, layerwise)
    top = targets.head_for_top(config.num_hidden_layers, sizes.layers)
    needs_top = [name for name, wanted in (("loss", params.loss == "reg+disc"),
                                           ("ctc_head", params.ctc_head == "composed")) if wanted]
    if needs_top and top is None:
        raise ConfigError(f"distillation.params.{needs_top[0]}",
                          f"{getattr(params, needs_top[0])!r} needs a head predicting the teacher's last layer "
                          f"({config.num_hidden_layers}) from the student's last: add it to targets")
    ctx.meta.update(student_config=student_config(config, sizes, frontend), frontend=frontend)
    student = build_student(ctx.meta)
    copied = copy_matching(student, teacher)
    if params.freeze_cnn and frontend["type"] == "cnn":
        student.freeze_feature_encoder()
    base_lr = TrainConfig.from_config(ctx.training).learning_rate
    ctx.meta.update(
        shape=params.shape, sizes=dataclasses.asdict(sizes),
        targets={"teacher": list(targets.teacher), "student": list(targets.student)}, top_head=top,
        loss=params.loss, cos_weight=params.cos_weight, disc_weight=params.disc_weight,
        disc_temperature=params.disc_temperature, distill_steps=params.distill_steps,
        distill_learning_rate=params.distill_learning_rate or base_lr, ctc_head=params.ctc_head,
        freeze_cnn=bool(params.freeze_cnn),
        copied_from_teacher=len(copied), teacher_hidden_size=config.hidden_size,
        teacher_parameters=count_parameters(teacher).parameters,
        student_parameters=count_parameters(student).parameters,
    )
    return student


def distill(student: torch.nn.Module, ctx: CompressionContext) -> Distiller:
    """Phase 1: train the student and its prediction heads to regress the teacher's hidden states."""
    meta = ctx.meta
    distiller, settings = Distiller.from_meta(student, meta), LossSettings.from_meta(meta)
    teacher = ctx.teacher()
    last: dict[str, float] = {}

    def loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], _step: int) -> torch.Tensor:
        teacher.to(batch["input_values"].device)  # the loop moves the student; the teacher follows (no-op after)
        terms = distillation_loss(model, teacher, batch, settings)
        last.update(l1=terms.l1, cos=terms.cos, disc=terms.disc)
        return terms.total

    phase = _phase(ctx, "distill")
    recovery = Recovery(meta["distill_steps"], learning_rate=meta["distill_learning_rate"])
    # SpecAugment masks would make the student regress unmasked targets from masked inputs: off here.
    augment, student.config.apply_spec_augment = student.config.apply_spec_augment, False
    try:
        phase.fine_tune(distiller, recovery, TrainHooks(loss=loss, evaluate=False, log_values=lambda _m: dict(last)))
    finally:
        student.config.apply_spec_augment = augment
        teacher.to("cpu")
    return distiller


@torch.no_grad()
def set_ctc_head(distiller: Distiller, ctx: CompressionContext) -> torch.nn.Module:
    """Drop the prediction heads; with ``composed``, the student's CTC head becomes the teacher's head
    applied to the prediction of the teacher's top layer (one linear map), so CTC starts from the
    teacher's outputs instead of from chance."""
    student = distiller.student
    if ctx.meta["ctc_head"] == "composed":
        head, lm = distiller.heads[ctx.meta["top_head"]], ctx.teacher().lm_head
        student.lm_head.weight.copy_(lm.weight @ head.weight)
        student.lm_head.bias.copy_(lm.weight @ head.bias + lm.bias)
    return student


def train_student(model: torch.nn.Module, ctx: CompressionContext, recovery: Recovery | None) -> torch.nn.Module:
    """Distillation, then CTC fine-tuning of the student with the variant's recovery steps."""
    if recovery is None:
        raise ConfigError("recovery", "distillation needs recovery.steps: the student learns CTC in that phase")
    student = set_ctc_head(distill(model, ctx), ctx)
    _phase(ctx, "ctc").fine_tune(student, recovery)
    return student


def restructure_student(_model: torch.nn.Module, _level: Any, _params: DistillationParams,
                        meta: dict[str, Any]) -> torch.nn.Module:
    return build_student(meta)


