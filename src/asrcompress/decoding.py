"""CTC decoding, batched over length-sorted utterances: greedy best path, or beam search with a KenLM
n-gram through pyctcdecode. The model runs once per batch; the search runs per utterance on its frames.

On a GPU the batches are larger (``decode.gpu_batch_seconds`` of audio), the waveforms are normalised and
padded on the device, the forward runs under autocast (``decode.precision``) and optionally compiled
(``decode.compile``), and greedy search takes its argmax there, so only token ids cross back to the host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from .device import autocast, model_dtype, precision_name, resolve_precision, synchronize
from .search import DecoderSpec, Search, beam_search

log = logging.getLogger(__name__)

MAX_PADDING = 0.1  # at most 10% padded samples per batch (decode.max_padding)
GPU_BATCH_SECONDS = 800.0  # decode.gpu_batch_seconds
COMPILE_BUCKET_SECONDS = 0.5  # a compiled forward sees batch lengths padded to multiples of this
# torch's default mode: "max-autotune-no-cudagraphs" tunes every matmul shape, minutes per shape on a large
# model, which one decode job (one test set) does not win back.
COMPILE_MODE: str | None = None

def greedy_ctc(logits: torch.Tensor, frame_lengths: torch.Tensor | Sequence[int], blank: int) -> list[list[int]]:
    """Best path per utterance: argmax per frame, merge repeats, drop blanks.

    ``logits`` is (batch, frames, vocab); frames past each utterance's length are ignored.
    """
    return collapse_paths(logits.argmax(dim=-1).cpu().numpy(), [int(n) for n in frame_lengths], blank)


def collapse_paths(best: np.ndarray, frame_lengths: Sequence[int], blank: int) -> list[list[int]]:
    """Per row of frame-wise best tokens (batch, frames): repeats merged, blanks dropped, padding frames ignored.

    >>> collapse_paths(np.array([[0, 3, 3, 0, 3, 5], [4, 4, 0, 6, 6, 6]]), [6, 4], blank=0)
    [[3, 3, 5], [4, 6]]
    """
    keep = best != blank
    keep[:, 1:] &= best[:, 1:] != best[:, :-1]  # a token survives where it starts a run
    return [row[:n][kept[:n]].tolist() for row, kept, n in zip(best, keep, frame_lengths)]


def ids_to_text(ids: Sequence[int], tokenizer) -> str:
    """Token ids (already collapsed) to words: the word delimiter becomes a space."""
    return tokenizer.decode(list(ids), group_tokens=False, skip_special_tokens=True).strip()


@dataclasses.dataclass
class DecodeTiming:
    """Cost of decoding one test set. The model runs once for all decoders; each decoder's wall time is
    that forward time plus its own search. Loading the model and reading audio are not counted; the forward
    time includes preparing the inputs (normalise, pad, copy to the device) and, when compiled, compiling.

    ``precision`` is the dtype the forward computed in (autocast's, or the variant's own); ``compiled``
    whether a compiled forward decoded it (a compile that failed fell back to eager: false)."""

    n_utterances: int
    audio_s: float
    forward_s: float
    search_s: dict[str, float]
    device: str
    threads: int
    batch_seconds: float
    precision: str = "float32"
    compiled: bool = False
    backend: str = "torch"  # or "onnxruntime": the variant's ONNX graph ran the forward (deploy.OnnxCTCModel)

    def wall_s(self, decoder: str) -> float:
        return self.forward_s + self.search_s[decoder]

    def rtf(self, decoder: str) -> float:
        return self.wall_s(decoder) / self.audio_s if self.audio_s else float("nan")

    def to_json(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record.pop("search_s")
        record["decoders"] = {name: {"search_s": s, "wall_s": self.wall_s(name), "rtf": self.rtf(name)}
                              for name, s in self.search_s.items()}
        return record


def length_sorted_batches(lengths: Sequence[int], max_samples: int, max_padding: float | None = None) -> list[list[int]]:
    """Indices sorted by length, grouped so each padded batch holds at most ``max_samples`` samples and, with
    ``max_padding``, at most that fraction of padding over its real audio.

    Bounding the padding matters on a CPU: padded samples cost as much as real ones there, and with long
    batches of LibriSpeech-like lengths (2-35 s) they are a fifth of the work.

    >>> length_sorted_batches([30, 10, 20, 11], max_samples=60)
    [[1, 3, 2], [0]]
    >>> length_sorted_batches([30, 10, 20, 11], max_samples=60, max_padding=0.1)
    [[1, 3], [2], [0]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    real = 0
    for index in order:
        padded = lengths[index] * (len(batches[-1]) + 1) if batches else 0
        fits = bool(batches) and padded <= max_samples
        if fits and max_padding is not None:
            fits = padded <= (1 + max_padding) * (real + lengths[index])
        if fits:
            batches[-1].append(index)
            real += lengths[index]
        else:
            batches.append([index])
            real = lengths[index]
    return batches


class MaskedGroupNorm(torch.nn.Module):
    """The group norm of a wav2vec2-style CNN front end, with statistics over each utterance's own frames.

    wav2vec2-base, HuBERT-base and WavLM-base normalise the first convolution's output over time; in a padded
    batch the zeros would enter those statistics and change every frame of the shorter utterances (Hugging
    Face advises not to batch such models). With the valid frame counts set per batch, padded decoding gives
    the logits of decoding each utterance alone. Later layers are exact anyway: a valid output frame of a
    convolution never reaches into padding, and the encoder gets the attention mask.
    """

    def __init__(self, norm: torch.nn.GroupNorm) -> None:
        super().__init__()
        self.norm = norm
        self.valid_frames: torch.Tensor | None = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.valid_frames is None:
            return self.norm(hidden)
        batch, channels, length = hidden.shape
        grouped = hidden.float().reshape(batch, self.norm.num_groups, -1, length)
        valid = (torch.arange(length, device=hidden.device)[None] < self.valid_frames.to(hidden.device)[:, None])
        padding = ~valid[:, None, None, :]
        count = valid.sum(-1).float()[:, None, None, None] * grouped.shape[2]
        # masked_fill rather than multiplying by a float mask: on a GPU batch of 800 s the first convolution's
        # output holds a billion values, and every full-size temporary costs gigabytes.
        mean = grouped.masked_fill(padding, 0.0).sum((-2, -1), keepdim=True) / count
        centered = grouped - mean
        var = centered.masked_fill(padding, 0.0).square().sum((-2, -1), keepdim=True) / count
        normed = (centered * torch.rsqrt(var + self.norm.eps)).reshape(batch, channels, length)
        if self.norm.affine:
            normed = normed * self.norm.weight.float()[:, None] + self.norm.bias.float()[:, None]
        return normed.to(hidden.dtype)


def _group_norm_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [module for name, module in model.named_modules()
            if name.endswith("conv_layers.0") and isinstance(getattr(module, "layer_norm", None), torch.nn.GroupNorm)]


def has_group_norm_front_end(model: torch.nn.Module) -> bool:
    return bool(_group_norm_layers(model))


@contextlib.contextmanager
def masked_group_norm(model: torch.nn.Module) -> Iterator[list[tuple[MaskedGroupNorm, torch.nn.Conv1d]]]:
    """While inside, every CNN front end's time-normalising group norm is a :class:`MaskedGroupNorm`.

    Yields each installed norm with the convolution before it (its kernel and stride give the valid frames);
    the original modules are put back on exit, so training and saving never see the wrapper.
    """
    installed = [(module, MaskedGroupNorm(module.layer_norm)) for module in _group_norm_layers(model)]
    try:
        for layer, masked in installed:
            layer.layer_norm = masked
        yield [(masked, layer.conv) for layer, masked in installed]
    finally:
        for layer, masked in installed:
            layer.layer_norm = masked.norm


def set_valid_samples(norms: Sequence[tuple[MaskedGroupNorm, torch.nn.Conv1d]], samples: torch.Tensor,
                      compiled: bool = False) -> None:
    for norm, conv in norms:
        norm.valid_frames = torch.div(samples - conv.kernel_size[0], conv.stride[0], rounding_mode="floor") + 1
        if compiled:
            # Its size is the batch size, which a compiled forward (ModelForward) keeps symbolic: left static, the
            # first batch size would be baked in. Only then: importing dynamo takes seconds.
            torch._dynamo.maybe_mark_dynamic(norm.valid_frames, 0)


def has_own_kernel(module: torch.nn.Module) -> bool:
    """Whether ``module`` computes with a kernel that fixes its own dtypes: a weight in a tensor format of its own
    (torchao's int8/int4 tensors, 2:4 semi-structured sparse ones)."""
    weight = getattr(module, "weight", None)
    return isinstance(weight, torch.Tensor) and type(weight) not in (torch.Tensor, torch.nn.Parameter)


def _float32(value: Any) -> Any:
    return value.float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value


@contextlib.contextmanager
def outside_autocast(model: torch.nn.Module, device_type: str) -> Iterator[None]:
    """While inside, every module with its own kernel (:func:`has_own_kernel`) runs with autocast off, on float32
    inputs: exactly as in a float32 forward. Autocast would otherwise cast a packed weight itself (the 2:4 sparse
    tensor has no such cast) or hand a half-precision activation to a kernel that takes float32;
    the rest of the model still runs in the autocast dtype. The modules' own forwards are back on exit."""
    patched = [(module, module.__dict__.get("forward")) for module in model.modules() if has_own_kernel(module)]
    for module, _ in patched:
        def forward(*args: Any, _forward: Callable[..., Any] = module.forward, **kwargs: Any) -> Any:
            with torch.autocast(device_type, enabled=False):
                return _forward(*map(_float32, args), **{k: _float32(v) for k, v in kwargs.items()})

        module.forward = forward
    try:
        yield
    finally:
        for module, own in patched:
            if own is None:
                del module.forward  # the class's forward again
            else:
                module.forward = own


def model_inputs(processor, waves: Sequence[np.ndarray], sample_rate: int) -> dict[str, torch.Tensor]:
    """Padded, per-utterance normalised waveforms and their attention mask (training and decoding alike)."""
    inputs = processor.feature_extractor(
        list(waves), sampling_rate=sample_rate, padding=True, return_attention_mask=True, return_tensors="pt"
    )
    return {"input_values": inputs.input_values, "attention_mask": inputs.attention_mask}


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def device_inputs(waves: Sequence[np.ndarray], feature_extractor, device: torch.device | str,
                  pad_to_multiple_of: int = 1) -> dict[str, torch.Tensor]:
    """What :func:`model_inputs` gives, computed on ``device``: one (pinned, on CUDA) copy of the concatenated
    raw waveforms, then padding and the feature extractor's per-utterance zero-mean / unit-variance
    normalisation (over the valid samples, eps 1e-7, when ``do_normalize``) done there with masks.

    ``pad_to_multiple_of`` pads the batch length further (a compiled forward sees few lengths). Nothing here
    waits for the device: the lengths come from the host.
    """
    device = torch.device(device)
    lengths = [len(w) for w in waves]
    width = round_up(max(lengths), pad_to_multiple_of)
    flat = torch.from_numpy(np.concatenate([np.asarray(w, dtype=np.float32) for w in waves]))
    if device.type == "cuda":
        flat = flat.pin_memory()
    flat = flat.to(device, non_blocking=True)
    values = torch.nn.utils.rnn.pad_sequence(list(flat.split(lengths)), batch_first=True)  # zeros after each
    if width > values.shape[1]:
        values = torch.nn.functional.pad(values, (0, width - values.shape[1]))
    counts = torch.tensor(lengths).to(device, non_blocking=True)
    valid = torch.arange(width, device=device)[None] < counts[:, None]
    if getattr(feature_extractor, "do_normalize", False):
        n = counts[:, None].float()
        mean = values.sum(-1, keepdim=True) / n
        centered = values - mean
        var = centered.masked_fill(~valid, 0.0).square().sum(-1, keepdim=True) / n  # numpy's var: population
        values = centered / torch.sqrt(var + 1e-7)
    padding_value = float(getattr(feature_extractor, "padding_value", 0.0))
    return {"input_values": values.masked_fill(~valid, padding_value), "attention_mask": valid.to(torch.int32)}


class ModelForward:
    """The model's forward, compiled when asked (CUDA only); a compile that fails, at once or at a later
    shape, is logged and the forward stays eager: a slower job, never a failed one."""

    def __init__(self, model: torch.nn.Module, compile: bool, mode: str | None = COMPILE_MODE,
                 backend: str | Callable[..., Any] = "inductor") -> None:
        self.model = model
        self.compiled: Callable[..., Any] | None = None
        if compile:
            try:
                self.compiled = torch.compile(model, mode=mode, backend=backend)
            except Exception as err:  # torch raises many types; any of them only means "run eager"
                self._fall_back(err)

    @property
    def is_compiled(self) -> bool:
        return self.compiled is not None

    def _fall_back(self, err: Exception) -> None:
        log.warning("torch.compile failed, decoding eagerly: %s: %s", type(err).__name__, str(err).splitlines()[0]
                    if str(err) else "")
        self.compiled = None

    def __call__(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.compiled is not None:
            # Batch size and length symbolic from the first compile: static shapes would compile once per batch
            # (every batch of a length-sorted test set has its own shape), torch's automatic dynamic twice more.
            # A batch of one still gets its own graph (torch specialises sizes 0 and 1).
            for tensor in inputs.values():
                torch._dynamo.maybe_mark_dynamic(tensor, 0)
                torch._dynamo.maybe_mark_dynamic(tensor, 1)
            try:
                return self.compiled(**inputs).logits
            except Exception as err:
                self._fall_back(err)
        return self.model(**inputs).logits


@dataclasses.dataclass
class BatchOutput:
    """One batch's model output on the host: frame-wise best tokens (greedy) and/or log-probabilities (beam).

    On a GPU both are reduced there and copied back without blocking (into pinned memory); ``wait`` is the
    one sync per batch, which also makes the forward time honest."""

    best: torch.Tensor | None
    log_probs: torch.Tensor | None
    ready: torch.cuda.Event | None = None

    @classmethod
    def of(cls, logits: torch.Tensor, greedy: bool, beam: bool) -> "BatchOutput":
        # argmax of half-precision logits equals argmax of their float32 copies (the cast is exact and monotone)
        best = logits.argmax(dim=-1).to(torch.int32) if greedy else None
        log_probs = torch.log_softmax(logits.float(), dim=-1) if beam else None
        if logits.device.type != "cuda":
            return cls(best, log_probs)
        best, log_probs = (_to_pinned_host(t) if t is not None else None for t in (best, log_probs))
        ready = torch.cuda.Event()
        ready.record()
        return cls(best, log_probs, ready)

    def wait(self) -> None:
        if self.ready is not None:
            self.ready.synchronize()


def _to_pinned_host(tensor: torch.Tensor) -> torch.Tensor:
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    return host.copy_(tensor, non_blocking=True)


@dataclasses.dataclass
class DecodeRun:
    """What decoding a list of waveforms gave: transcripts per decoder (input order) and how it ran."""

    hypotheses: dict[str, list[str]]
    forward_s: float
    search_s: dict[str, float]
    precision: str
    compiled: bool
    batch_seconds: float


def transcribe(
    model, processor, waves: Sequence[np.ndarray], sample_rate: int, batch_seconds: float, device: torch.device,
    search: Search | None = None, max_padding: float | None = MAX_PADDING, *, precision: str = "auto",
    gpu_batch_seconds: float = GPU_BATCH_SECONDS,
) -> tuple[list[str], float]:
    """Transcripts in input order and the wall seconds spent on forward passes and search."""
    run = decode_waves(model, processor, waves, sample_rate, batch_seconds, device, {"": search}, max_padding,
                       precision=precision, gpu_batch_seconds=gpu_batch_seconds)
    return run.hypotheses[""], run.forward_s + run.search_s[""]


def transcribe_all(
    model, processor, waves: Sequence[np.ndarray], sample_rate: int, batch_seconds: float, device: torch.device,
    searches: dict[str, Search | None], max_padding: float | None = MAX_PADDING, *, precision: str = "auto",
    gpu_batch_seconds: float = GPU_BATCH_SECONDS, compile: bool = False,
) -> tuple[dict[str, list[str]], float, dict[str, float]]:
    """Every decoder's transcripts from one forward pass per batch, in input order.

    A search decodes one utterance's log-probabilities; ``None`` is greedy best path over the whole batch.
    Returns the transcripts per decoder, the forward seconds, and each decoder's search seconds.
    """
    run = decode_waves(model, processor, waves, sample_rate, batch_seconds, device, searches, max_padding,
                       precision=precision, gpu_batch_seconds=gpu_batch_seconds, compile=compile)
    return run.hypotheses, run.forward_s, run.search_s


def _front_end_samples(model: torch.nn.Module, samples: torch.Tensor) -> torch.Tensor:
    # A signal-downsampling wrapper feeds its front end fewer samples than the waveform has.
    return model.front_end_samples(samples) if hasattr(model, "front_end_samples") else samples


@torch.inference_mode()
def decode_waves(
    model, processor, waves: Sequence[np.ndarray], sample_rate: int, batch_seconds: float, device: torch.device,
    searches: dict[str, Search | None], max_padding: float | None = MAX_PADDING, *, precision: str = "auto",
    gpu_batch_seconds: float = GPU_BATCH_SECONDS, compile: bool = False,
    compile_bucket_seconds: float = COMPILE_BUCKET_SECONDS,
) -> DecodeRun:
    """:func:`transcribe_all`, saying also how it ran (precision, compiled, batch seconds).

    ``batch_seconds`` is the padded audio per batch on a CPU, ``gpu_batch_seconds`` on a GPU. ``precision``
    (``decode.precision``) autocasts a float32 variant's forward; a variant stored in half precision keeps its
    dtype. ``compile`` applies on CUDA only; its batches are padded to multiples of ``compile_bucket_seconds``.
    """
    model = model.to(device).eval()
    cuda = device.type == "cuda"
    # An ONNX graph runs each utterance of a batch unpadded on its own (deploy.OnnxCTCModel): exact for any norm.
    unpadded = getattr(model, "runs_unpadded", False)
    if not cuda and not unpadded and has_group_norm_front_end(model):
        # Measured (benchmarks/decode_benchmark.py, wav2vec2-base shape, 2 threads): on a CPU a batched group-norm
        # front end is 18% slower than one utterance at a time, so such models decode unpadded there.
        max_padding = 0.0
    if compile and not cuda:
        log.info("decode.compile is ignored on %s: compiling costs more there than it saves", device.type)
    dtype = model_dtype(model)
    # Autocast only a float32 model: a variant stored in fp16/bf16 computes in its own dtype, and integer
    # kernels are not float ops autocast would touch.
    requested = resolve_precision(precision, device)
    cast = requested if dtype == torch.float32 else None
    seconds = gpu_batch_seconds if cuda else batch_seconds
    multiple = max(1, int(compile_bucket_seconds * sample_rate)) if compile and cuda else 1
    greedy = any(search is None for search in searches.values())
    beam = any(search is not None for search in searches.values())
    blank = processor.tokenizer.pad_token_id
    hypotheses = {name: [""] * len(waves) for name in searches}
    search_s = dict.fromkeys(searches, 0.0)
    forward_s = 0.0
    # The group norms are swapped once for the whole run: a compiled forward would recompile on every swap.
    own_kernels = outside_autocast(model, device.type) if cast is not None else contextlib.nullcontext()
    norm_swap = contextlib.nullcontext([]) if unpadded else masked_group_norm(model)
    with norm_swap as norms, own_kernels:
        forward = ModelForward(model, compile and cuda)
        for index in length_sorted_batches([len(w) for w in waves], int(seconds * sample_rate), max_padding):
            batch = [waves[i] for i in index]
            samples = torch.tensor([len(w) for w in batch])
            synchronize(device)
            started = time.perf_counter()
            inputs = _batch_inputs(processor, batch, sample_rate, device, multiple)
            inputs["input_values"] = inputs["input_values"].to(dtype)  # half-precision variants take half inputs
            if unpadded:
                inputs["sample_lengths"] = samples
            set_valid_samples(norms, _front_end_samples(model, samples.to(device, non_blocking=True)),
                              forward.is_compiled)
            with autocast(device, cast):
                output = BatchOutput.of(forward(inputs), greedy, beam)
            output.wait()
            forward_s += time.perf_counter() - started
            frames = model._get_feat_extract_output_lengths(samples).tolist()
            paths = collapse_paths(output.best.numpy(), frames, blank) if greedy else []
            for name, search in searches.items():
                started = time.perf_counter()
                if search is None:
                    texts = [ids_to_text(ids, processor.tokenizer) for ids in paths]
                else:
                    log_probs = output.log_probs.numpy()
                    texts = [search(log_probs[row, : int(n)]) for row, n in enumerate(frames)]
                search_s[name] += time.perf_counter() - started
                for i, text in zip(index, texts):
                    hypotheses[name][i] = text
    precision_used = precision_name(cast) if dtype == torch.float32 else precision_name(dtype)
    return DecodeRun(hypotheses, forward_s, search_s, precision_used, forward.is_compiled, seconds)


def _batch_inputs(processor, waves: Sequence[np.ndarray], sample_rate: int, device: torch.device,
                  pad_to_multiple_of: int) -> dict[str, torch.Tensor]:
    if device.type == "cuda":
        return device_inputs(waves, processor.feature_extractor, device, pad_to_multiple_of)
    # Measured on 2 CPU threads, 2474 s of LibriSpeech-like lengths (fastest of 7 interleaved rounds per batch):
    # the feature extractor's NumPy loop 0.24 s in 60 s batches (0.19 s unpadded, one utterance per batch),
    # device_inputs 0.58 s (0.25 s): it makes a few more passes over memory. Both are under 1 % of the CPU
    # forward; the CPU keeps the faster one.
    return model_inputs(processor, waves, sample_rate)


def make_search(decoder: DecoderSpec, processor, vocab_size: int, lm_path: str | None) -> Search | None:
    if decoder.kind == "greedy":
        return None
    return beam_search(decoder, processor.tokenizer, vocab_size, lm_path)
