"""ONNX export and ONNX Runtime (issue #17): the export check, ort_int8, decode.backend onnxruntime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from asrcompress.compression.registry import Variant
from asrcompress.compression.store import compress, load_variant
from asrcompress.decode_stage import TestSetJob, decode_test_sets
from asrcompress.deploy import EXPORT_RECORD, ONNX_FILE, OnnxCTCModel, export_onnx
from asrcompress.errors import ConfigError
from asrcompress.export import export_variant, onnx_runtime_model, read_export
from asrcompress.manifest import Utterance, write_manifest

pytestmark = pytest.mark.usefixtures("one_thread")
RATE = 16000


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, real_data, transcripts) -> str:
    """Six real utterances, whole, with their transcripts."""
    from asrcompress.audio import duration_s

    path = tmp_path_factory.mktemp("check") / "test.jsonl"
    rows = transcripts[:6]
    write_manifest(path, [Utterance(r["utt_id"], str(real_data / r["path"]), duration_s(real_data / r["path"]), "s",
                                    r["text"]) for r in rows])
    return str(path)


@pytest.fixture(scope="module")
def variants(tmp_path_factory, baseline) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("variants")
    made = {}
    for variant in (Variant.of("none"), Variant.of("magnitude", 0.5), Variant.of("bf16"), Variant.of("ort_int8")):
        compress(baseline, variant, out / variant.id, cost_seconds=1.0, cost_repeats=1)
        made[variant.id] = out / variant.id
    return made


def _export(variants, manifest, tmp_path, name) -> tuple[Path, dict]:
    out = tmp_path / "onnx" / name
    export_variant(variants[name], manifest, out, RATE, cost_seconds=1.0, cost_repeats=1)
    return out, json.loads((out / EXPORT_RECORD).read_text())


@pytest.mark.parametrize("name", ["none", "magnitude~0.5"])
def test_exported_graph_matches_the_torch_variant(variants, manifest, tmp_path, name):
    out, record = _export(variants, manifest, tmp_path, name)
    assert record["status"] == "ok", record
    assert record["max_logit_diff"] <= record["logits_atol"] == 1e-3
    assert record["transcripts_equal"] == record["transcripts_checked"] == 6
    assert record["ort_latency_ms"] > 0 and record["torch_latency_ms"] > 0
    assert (out / ONNX_FILE).stat().st_size == record["onnx_bytes"]


def test_a_variant_that_cannot_export_names_its_operator_and_decodes_with_torch(variants, manifest, tmp_path, caplog):
    out, record = _export(variants, manifest, tmp_path, "bf16")
    assert record["status"] == "failed" and record["op"] == "bfloat16 weights"
    assert not (out / ONNX_FILE).exists()
    model, _, _ = load_variant(variants["bf16"])
    with caplog.at_level("WARNING"):
        assert onnx_runtime_model(model, out, 1) is model
    assert "bf16" in caplog.text and "bfloat16 weights" in caplog.text


def test_an_op_without_onnx_form_is_named(baseline, tmp_path):
    """torch.ao's int8 Linear (no method of ours makes it any more) has no ONNX form: the error names its op."""
    import warnings

    from asrcompress.deploy import ExportError
    from asrcompress.models import load_pretrained_dir

    model, _ = load_pretrained_dir(baseline)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        quantized = torch.ao.quantization.quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8)
    with pytest.raises(ExportError, match="quantized::linear_dynamic") as caught:
        export_onnx(quantized, tmp_path / "m.onnx", "torch_ao_int8")
    assert caught.value.op == "quantized::linear_dynamic" and caught.value.variant == "torch_ao_int8"
    assert not (tmp_path / "m.onnx").exists()


def test_a_mismatched_graph_is_not_decoded(variants, manifest, tmp_path, caplog):
    out, record = _export(variants, manifest, tmp_path, "none")
    (out / EXPORT_RECORD).write_text(json.dumps({**record, "status": "mismatch"}))
    model, _, _ = load_variant(variants["none"])
    with caplog.at_level("WARNING"):
        assert onnx_runtime_model(model, out, 1) is model
    assert "mismatch" in caplog.text
    (out / EXPORT_RECORD).write_text(json.dumps(record))
    assert isinstance(onnx_runtime_model(model, out, 1), OnnxCTCModel)


def test_a_folder_of_an_older_method_version_is_refused_by_name(variants, tmp_path):
    """dynamic_int8 version 1 stored torch.ao packed weights: its folder must say 'rebuild', not fail on keys."""
    import shutil

    from asrcompress.errors import PipelineError

    old = tmp_path / "old_int8"
    shutil.copytree(variants["ort_int8"], old)
    card = json.loads((old / "card.json").read_text())
    card["recipe"]["steps"][0]["method"] = "dynamic_int8"
    del card["method_versions"]
    (old / "card.json").write_text(json.dumps(card))
    with pytest.raises(PipelineError, match=r"version 1 of method 'dynamic_int8'.*now version 2.*rebuild"):
        load_variant(old)


def test_onnx_batches_give_what_batches_of_one_give(variants):
    """Rows of a padded batch run unpadded on their own (side by side on two threads): the same logits as one
    utterance at a time, whatever the padding."""
    model, _, _ = load_variant(variants["none"])
    path = Path(variants["none"]).parent / "plain.onnx"
    export_onnx(model, path, "none")
    generator = torch.Generator().manual_seed(1)
    lengths = [12000, 4000, 9000]
    batch = torch.zeros(3, max(lengths))
    for row, n in enumerate(lengths):
        batch[row, :n] = torch.randn(n, generator=generator)
    for threads in (1, 2):
        graph = OnnxCTCModel(path, model, threads)
        logits = graph(input_values=batch, sample_lengths=torch.tensor(lengths)).logits
        for row, n in enumerate(lengths):
            alone = graph(input_values=batch[row: row + 1, :n]).logits[0]
            frames = int(model._get_feat_extract_output_lengths(torch.tensor(n)))
            assert alone.shape[0] == frames
            torch.testing.assert_close(logits[row, :frames], alone, rtol=0, atol=0)
            assert torch.all(logits[row, frames:] == 0)
            with torch.inference_mode():
                torch.testing.assert_close(alone, model(input_values=batch[row: row + 1, :n]).logits[0],
                                           rtol=1e-4, atol=1e-4)


def test_decode_backend_onnxruntime_gives_the_torch_transcripts(variants, manifest, tmp_path):
    out, record = _export(variants, manifest, tmp_path, "none")
    assert record["status"] == "ok"
    hyps = {}
    for backend, onnx_dir in (("torch", None), ("onnxruntime", str(out))):
        job = TestSetJob(manifest, {"greedy": str(tmp_path / f"{backend}.jsonl")}, str(tmp_path / f"{backend}.json"))
        (timing,) = decode_test_sets(str(variants["none"]), [job], RATE, 30.0, 1, onnx_dir=onnx_dir)
        assert timing.backend == backend
        assert json.loads(Path(job.timing_path).read_text())["backend"] == backend
        hyps[backend] = [json.loads(line)["hypothesis"] for line in Path(job.hyps_paths["greedy"]).read_text().splitlines()]
    assert hyps["onnxruntime"] == hyps["torch"] and len(hyps["torch"]) == 6


def test_ort_int8_is_a_variant_decoded_by_onnx_runtime(variants, manifest, tmp_path):
    card = json.loads((variants["ort_int8"] / "card.json").read_text())
    none = json.loads((variants["none"] / "card.json").read_text())
    assert card["runtime"] == "onnxruntime" and card["cpu_only"]
    assert card["parameters"] == none["parameters"]
    assert card["packed_bytes"] < 0.6 * none["packed_bytes"]  # int8 Linear weights; the CNN stays float
    assert card["bytes_on_disk"] == (variants["ort_int8"] / ONNX_FILE).stat().st_size
    assert card["gmacs_per_audio_s"] == pytest.approx(none["gmacs_per_audio_s"])
    model, processor, _ = load_variant(variants["ort_int8"])
    assert isinstance(model, OnnxCTCModel)
    float_model, _, _ = load_variant(variants["none"])
    audio = torch.randn(1, RATE, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        int8, fp32 = model(input_values=audio).logits, float_model(input_values=audio).logits
    assert int8.shape == fp32.shape and not torch.equal(int8, fp32)
    assert float((int8 - fp32).abs().mean()) < 0.2 * float(fp32.abs().mean())  # quantized, not broken
    out, record = _export(variants, manifest, tmp_path, "ort_int8")
    assert record["status"] == "native" and record["ort_latency_ms"] > 0
    job = TestSetJob(manifest, {"greedy": str(tmp_path / "int8.jsonl")}, str(tmp_path / "int8.json"))
    (timing,) = decode_test_sets(str(variants["ort_int8"]), [job], RATE, 30.0, 1)
    assert timing.backend == "onnxruntime"


def test_ort_int8_must_end_a_chain():
    from asrcompress.compression.registry import variants_from_config

    with pytest.raises(ConfigError, match=r"compression\[0\]\.then.*ort_int8.*last step"):
        variants_from_config([{"method": "ort_int8", "then": [{"method": "magnitude", "level": 0.5}]}])
    (variant,) = variants_from_config([{"method": "magnitude", "levels": [0.5], "then": [{"method": "ort_int8"}]}])
    assert variant.id == "magnitude~0.5+ort_int8" and variant.runtime == "onnxruntime" and variant.cpu_only


def test_export_record_round_trips(variants, manifest, tmp_path):
    out, record = _export(variants, manifest, tmp_path, "bf16")
    check = read_export(out)
    assert check.to_json() == record and not check.usable


def test_docstring_examples():
    import doctest

    import asrcompress.deploy

    result = doctest.testmod(asrcompress.deploy)
    assert result.attempted >= 4 and result.failed == 0


def test_bf16_cannot_export_and_says_why(baseline, tmp_path):
    from asrcompress.deploy import ExportError
    from asrcompress.models import load_pretrained_dir

    model, _ = load_pretrained_dir(baseline)
    with pytest.raises(ExportError, match="bf16.*bfloat16 weights"):
        export_onnx(model.to(torch.bfloat16), tmp_path / "m.onnx", "bf16")
    assert not (tmp_path / "m.onnx").exists()
