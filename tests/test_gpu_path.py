"""The GPU path of decoding and fine-tuning, through what it shares with the CPU: inputs prepared on the device,
precision, bucket padding, device choice, compiling, mixed-precision training, and the GPU benchmark's CPU run."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch._dynamo

from asrcompress.decode_stage import decode_test_set
from asrcompress.decoding import (
    DecodeTiming, ModelForward, decode_waves, device_inputs, masked_group_norm, model_inputs, set_valid_samples,
)
from asrcompress.device import PrecisionError, pick_device, resolve_precision
from asrcompress.errors import ConfigError
from asrcompress.models import build_processor
from asrcompress.scoring import count_errors, total
from asrcompress.training import TrainConfig, train, update

from helpers import tiny_model
from test_decoding import group_norm_model

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_thread")


def waves_of(lengths, seed: int = 0, offset: float = 0.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(n) * rng.uniform(0.01, 0.5) + offset).astype(np.float32) for n in lengths]


def logits_of(model: torch.nn.Module) -> tuple[list[torch.Tensor], torch.utils.hooks.RemovableHandle]:
    """The logits of every forward call of ``model``, collected by a hook (remove it when done)."""
    collected: list[torch.Tensor] = []
    handle = model.register_forward_hook(lambda _m, _a, output: collected.append(output.logits.float()))
    return collected, handle


# ---------------------------------------------------------------- inputs on the device


def test_device_inputs_equal_the_feature_extractors():
    processor = build_processor()
    waves = waves_of([16000, 3000, 12345, 16000, 800], offset=0.2)  # an offset: the mean matters
    expected = model_inputs(processor, waves, 16000)
    got = device_inputs(waves, processor.feature_extractor, CPU)
    torch.testing.assert_close(got["input_values"], expected["input_values"], atol=1e-5, rtol=1e-5)
    assert torch.equal(got["attention_mask"], expected["attention_mask"])

    processor.feature_extractor.do_normalize = False
    processor.feature_extractor.padding_value = -1.0
    raw = device_inputs(waves, processor.feature_extractor, CPU)
    torch.testing.assert_close(raw["input_values"], model_inputs(processor, waves, 16000)["input_values"])
    assert raw["input_values"][4, 800:].eq(-1.0).all()


def test_bucket_padding_pads_to_the_multiple_and_keeps_group_norm_batches_exact():
    model, processor = group_norm_model(), build_processor()
    waves = waves_of([4000, 6400, 9000], seed=1)
    padded = device_inputs(waves, processor.feature_extractor, CPU, pad_to_multiple_of=8000)
    assert padded["input_values"].shape == (3, 16000)
    assert padded["attention_mask"].sum(-1).tolist() == [4000, 6400, 9000]
    assert padded["input_values"][:, 9000:].eq(0).all()
    samples = torch.tensor([len(w) for w in waves])
    frames = model._get_feat_extract_output_lengths(samples).tolist()
    with torch.inference_mode():
        alone = [model(**model_inputs(processor, [w], 16000)).logits[0] for w in waves]
        with masked_group_norm(model) as norms:
            set_valid_samples(norms, samples)
            batched = model(**padded).logits
    for row, (single, n) in enumerate(zip(alone, frames)):
        torch.testing.assert_close(batched[row, :n], single, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- precision


def test_resolve_precision(monkeypatch):
    assert resolve_precision("auto", CPU) is None
    assert resolve_precision("fp32", CPU) is None
    assert resolve_precision("bf16", "cpu") is torch.bfloat16
    for key in ("decode.precision", "finetune.precision"):
        with pytest.raises(PrecisionError, match=f"'{key}'.*fp16 runs on a GPU only") as error:
            resolve_precision("fp16", CPU, key=key)
        assert isinstance(error.value, ValueError) and isinstance(error.value, ConfigError)
    with pytest.raises(PrecisionError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", CPU)

    cuda = torch.device("cuda", 0)  # only the bf16 capability is asked: no GPU needed
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: not including_emulation)
    assert resolve_precision("auto", cuda) is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)  # e.g. a V100
    assert resolve_precision("auto", cuda) is torch.float16
    assert resolve_precision("fp16", cuda) is torch.float16
    assert resolve_precision("fp32", cuda) is None


def test_bf16_autocast_on_cpu_decodes_like_fp32():
    torch.manual_seed(0)
    model, processor = tiny_model()
    waves = waves_of(np.random.default_rng(2).integers(8000, 40000, 10).tolist(), seed=2)
    runs, logits = {}, {}
    for precision in ("auto", "bf16"):
        logits[precision], handle = logits_of(model)
        runs[precision] = decode_waves(model, processor, waves, 16000, 10.0, CPU, {"greedy": None}, precision=precision)
        handle.remove()
    assert (runs["auto"].precision, runs["bf16"].precision) == ("float32", "bfloat16")
    full, half = logits["auto"], logits["bf16"]
    assert len(full) == len(half) > 1
    # bf16 keeps ~3 significant digits: close, but not equal (autocast did run)
    worst = max(float((a - b).abs().max() / a.abs().max()) for a, b in zip(full, half))
    assert 0 < worst < 0.05
    agree = np.mean([float((a.argmax(-1) == b.argmax(-1)).float().mean()) for a, b in zip(full, half)])
    assert agree > 0.95
    # Random weights make near-ties common, so a transcript may differ by a character or two, not more.
    pairs = zip(runs["auto"].hypotheses["greedy"], runs["bf16"].hypotheses["greedy"])
    assert total(count_errors(a, b) for a, b in pairs).cer < 0.1


def test_half_precision_variants_keep_their_dtype():
    torch.manual_seed(0)
    model, processor = tiny_model()
    waves = waves_of([8000, 12000], seed=3)
    half = decode_waves(model.to(torch.float16), processor, waves, 16000, 10.0, CPU, {"g": None}, precision="bf16")
    assert half.precision == "float16"  # stored in fp16: no autocast on top


def test_decode_test_set_rejects_fp16_on_a_cpu_before_loading(tmp_path):
    (tmp_path / "card.json").write_text('{"cpu_only": true}')
    with pytest.raises(PrecisionError, match="decode.precision"):
        decode_test_set(str(tmp_path), "missing.jsonl", "hyps.jsonl", "timing.json", 16000, 10.0, 1, precision="fp16")


def test_decode_timing_records_precision_and_compile():
    timing = DecodeTiming(2, 3.0, 1.0, {"greedy": 0.5}, "cuda", 4, 800.0, "bfloat16", True)
    record = timing.to_json()
    assert (record["device"], record["precision"], record["compiled"], record["batch_seconds"]) == (
        "cuda", "bfloat16", True, 800.0)
    assert record["decoders"]["greedy"]["wall_s"] == 1.5
    assert DecodeTiming(2, 3.0, 1.0, {}, "cpu", 4, 60.0).precision == "float32"  # older callers


# ---------------------------------------------------------------- device choice


def fake_gpus(monkeypatch, free_gib: list[float]) -> list[int]:
    """``torch.cuda`` answering as if ``free_gib`` GPUs were there; returns the devices made current."""
    current: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(free_gib))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index: (int(free_gib[index] * 2**30), 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    return current


def test_pick_device_takes_the_schedulers_gpu_or_the_one_with_most_free_memory(monkeypatch, caplog):
    current = fake_gpus(monkeypatch, [10.0, 70.0, 30.0])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,6")  # SLURM: the first visible is the allocated one
    assert pick_device() == torch.device("cuda", 0)
    assert current == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with caplog.at_level(logging.INFO, logger="asrcompress.device"):
        assert pick_device() == torch.device("cuda", 1)
    assert current == [1]
    assert "using cuda:1" in caplog.text
    assert pick_device(cpu_only=True) == CPU
    fake_gpus(monkeypatch, [5.0])
    assert pick_device() == torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device() == CPU


# ---------------------------------------------------------------- compiling


def test_compile_is_ignored_on_a_cpu(caplog):
    torch.manual_seed(0)
    model, processor = tiny_model()
    waves = waves_of([8000, 9000, 20000], seed=4)
    eager = decode_waves(model, processor, waves, 16000, 10.0, CPU, {"g": None})
    with caplog.at_level(logging.INFO, logger="asrcompress.decoding"):
        run = decode_waves(model, processor, waves, 16000, 10.0, CPU, {"g": None}, compile=True)
    assert not run.compiled
    assert "decode.compile is ignored on cpu" in caplog.text
    assert run.hypotheses == eager.hypotheses


def test_a_compiled_forward_traces_masked_group_norm_batches_into_one_graph():
    """What decode_waves compiles on CUDA, traced on the CPU (dynamo with the eager backend: no kernels made)."""
    model, processor = group_norm_model(), build_processor()
    torch._dynamo.reset()
    before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    with torch.inference_mode(), masked_group_norm(model) as norms:
        forward = ModelForward(model, compile=True, backend="eager")
        for lengths in ((4000, 6400, 8000), (3000, 5000), (7000, 7500, 9000, 12000)):  # sizes and lengths vary
            inputs = device_inputs(waves_of(lengths, seed=5), processor.feature_extractor, CPU, pad_to_multiple_of=8000)
            set_valid_samples(norms, torch.tensor(lengths), compiled=True)
            torch.testing.assert_close(forward(inputs), model(**inputs).logits)
    assert forward.is_compiled
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - before == 1
    torch._dynamo.reset()


def test_a_failing_compile_falls_back_to_eager(caplog):
    from transformers.modeling_outputs import CausalLMOutput

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 3)

        def forward(self, input_values: torch.Tensor) -> CausalLMOutput:
            return CausalLMOutput(logits=self.linear(input_values))

    def broken_backend(graph, example_inputs):
        raise RuntimeError("no kernel for this GPU")

    torch._dynamo.reset()
    head, values = Head(), torch.randn(2, 5, 4)
    forward = ModelForward(head, compile=True, backend=broken_backend)
    with caplog.at_level(logging.WARNING, logger="asrcompress.decoding"):
        logits = forward({"input_values": values})
    torch.testing.assert_close(logits, head(values).logits)
    assert not forward.is_compiled
    assert "torch.compile failed, decoding eagerly" in caplog.text
    torch._dynamo.reset()


# ---------------------------------------------------------------- training


def _train(corpus, checkpoint_dir, precision: str, steps: int = 2, model=None):
    torch.manual_seed(0)
    if model is None:
        model, processor = tiny_model()
    else:
        processor = build_processor()
    config = TrainConfig(steps=steps, batch_seconds=4.0, learning_rate=1e-3, warmup_steps=1, eval_every=100,
                         checkpoint_every=1, seed=0, threads=1, precision=precision)
    return model, train(model, processor, *corpus, checkpoint_dir, config, 16000)


def test_bf16_training_on_a_cpu_autocasts_and_resumes_under_another_precision(tiny_corpus, tmp_path, caplog):
    torch.manual_seed(0)
    model, _ = tiny_model()
    dtypes: list[torch.dtype] = []
    handle = model.lm_head.register_forward_hook(lambda _m, _a, output: dtypes.append(output.dtype))
    model, result = _train(tiny_corpus, tmp_path, "bf16", model=model)
    handle.remove()
    assert dtypes[0] == torch.bfloat16  # the training forward ran under autocast
    assert np.isfinite(result.final_train_loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the weights stay float32
    # The precision is not part of the run's identity: a run killed in bf16 resumes in fp32 (as on another device).
    with caplog.at_level(logging.INFO, logger="asrcompress.training"):
        _train(tiny_corpus, tmp_path, "fp32", steps=2)
    assert "resumed from" in caplog.text and "at step 1" in caplog.text


def test_fp16_training_on_a_cpu_fails_clearly(tmp_path):
    model, processor = tiny_model()
    config = TrainConfig(steps=1, precision="fp16")
    with pytest.raises(PrecisionError, match="'finetune.precision'"):
        train(model, processor, "unread.jsonl", "unread.jsonl", tmp_path, config, 16000)


def test_a_gradient_scaler_unscales_before_clipping_and_skips_overflowing_steps():
    def step(loss_scale: float, scaler) -> torch.nn.Parameter:
        weight = torch.nn.Parameter(torch.ones(3))
        optimizer = torch.optim.SGD([weight], lr=0.1)
        update((weight * loss_scale).sum(), optimizer, [weight], 1.0, scaler)
        return weight

    plain = step(100.0, None)
    scaled = step(100.0, torch.amp.GradScaler("cpu"))  # scale 65536: clipping the scaled gradient would do nothing
    torch.testing.assert_close(scaled, plain)
    assert float(plain[0]) < 1.0
    scaler = torch.amp.GradScaler("cpu")
    overflowed = step(float("inf"), scaler)
    assert torch.equal(overflowed.detach(), torch.ones(3))
    assert scaler.get_scale() < 65536.0


# ---------------------------------------------------------------- the GPU benchmark, run on a CPU


def test_gpu_benchmark_tiny_runs_on_a_cpu(tmp_path):
    out = tmp_path / "gpu.md"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_benchmark.py"), "--tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=180, cwd=REPO,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"})  # a CPU run
    assert done.returncode == 0, done.stderr[-3000:]
    table = out.read_text()
    assert f"--tiny --out {out}" in table  # the command line
    rows = [line for line in table.splitlines() if line.startswith("| base") or line.startswith("| large")]
    assert len(rows) == 2 * 8
    for shape in ("base", "large"):
        mine = [r.split(" | ") for r in rows if r.startswith(f"| {shape}")]
        naive, fp32, bf16 = mine[0], mine[1], mine[2]
        assert naive[1].startswith("naive HF loop") and float(naive[4]) > 0 and naive[5] == "1.0x"
        assert (fp32[1], fp32[2]) == ("dense", "float32") and float(fp32[4]) > 0 and fp32[7] == "100%"
        assert (bf16[1], bf16[2]) == ("dense", "bfloat16") and float(bf16[4]) > 0
        assert float(mine[5][4]) > 0  # dynamic int8 on ONNX Runtime's CPU kernels
        skipped = [r for r in mine if "not measured" in r[-1]]
        assert {r[1] for r in skipped} == {"dense", "dense, torch.compile",
                                           "4-bit weight-only (qat~4 RTN, int4 tinygemm)",
                                           "2:4 semi-structured (nm_sparsity~2:4)"}
