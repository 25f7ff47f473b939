"""Bad configs stop before any job, with a message naming the key."""

from __future__ import annotations


import pytest

from asrcompress.config import build_grid, check_schema, load_config
from asrcompress.errors import ConfigError

from workflow_utils import REPO, snakemake, tiny_config, workflow_copy

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def broken(change):
    config = tiny_config()
    change(config)
    return config


BAD_CONFIGS = {
    "unknown-key": (lambda c: c["conditions"].update(nois={"types": ["white"]}), "conditions.nois"),
    "unknown-top-key": (lambda c: c.update(sead=3), "sead"),
    "wrong-type": (lambda c: c["finetune"].update(steps="many"), "finetune.steps"),
    "snr-as-text": (lambda c: c["conditions"]["noise"].update(snr_db=[20, "ten"]), "conditions.noise.snr_db[1]"),
    "empty-variants": (lambda c: c.update(compression=[]), "compression"),
    "unknown-method": (lambda c: c["compression"].append({"method": "svd"}), "compression[4].method"),
    "unknown-noise": (lambda c: c["conditions"]["noise"].update(types=["traffic"]), "conditions"),
    "snr-too-low": (lambda c: c["conditions"]["noise"].update(snr_db=[20, -25]), "conditions.noise.snr_db[1]"),
    "snr-too-high": (lambda c: c["conditions"]["noise_reverb"].update(snr_db=[65]), "conditions.noise_reverb.snr_db[0]"),
    "snr-reference": (lambda c: c["conditions"].update(snr_reference="speech"), "conditions.snr_reference"),
    "babble-of-test-voice": (lambda c: c["banks"]["noise"].update(babble_voices=["en-us+m3"]), "banks.noise.babble_voices"),
    "folder-bank-without-kind": (lambda c: c["banks"].update(corpora={"mine": {"folder": "x"}}), "banks.corpora.mine"),
    "decode-job-per-utterance": (lambda c: c["decode"].update(one_job_per="utterance"), "decode.one_job_per"),
    "score-job-per-model": (lambda c: c["score"].update(one_job_per="model"), "score.one_job_per"),
    "training-gpus-on-cpu-jobs": (lambda c: c["finetune"].update(gpus=4), "finetune.gpus"),
    "zero-training-gpus": (lambda c: c["finetune"].update(gpus=0), "finetune.gpus"),
    "onnx-backend-without-export": (lambda c: (c["decode"].update(backend="onnxruntime"), c.update(onnx={"export": False})),
                                    "decode.backend"),
    "unknown-backend": (lambda c: c["decode"].update(backend="tensorrt"), "decode.backend"),
    "opset-too-old": (lambda c: c.update(onnx={"opset": 13}), "onnx.opset"),
    "int8-after-fbank-student": (lambda c: c.update(compression=[{"method": "distillation", "params": {"frontend": "fbank"},
                                                                  "recovery": {"steps": 2}, "then": [{"method": "ort_int8"}]}]),
                                 "compression[0].then"),
    "rt60-range-on-noise": (lambda c: c["banks"].update(corpora={"mine": {"folder": "x", "kind": "noise",
                                                                          "rt60_range_s": [0.1, 0.5]}}),
                            "banks.corpora.mine.rt60_range_s"),
}


@pytest.mark.parametrize("name", BAD_CONFIGS)
def test_library_names_the_key(name):
    change, key = BAD_CONFIGS[name]
    config = broken(change)
    with pytest.raises(ConfigError) as err:
        check_schema(config, SCHEMA)
        build_grid(config)
    assert f"'{key}'" in str(err.value)


def test_demo_and_tiny_configs_are_valid():
    _, grid = load_config(REPO / "config" / "config.yaml", SCHEMA)
    assert len(grid.conditions) >= 1 + 3 * 4 + 2 + 1
    assert {v.method for v in grid.variants} >= {"none", "dynamic_int8", "magnitude"}
    check_schema(tiny_config(), SCHEMA)


@pytest.mark.parametrize("name", ["unknown-key", "snr-as-text", "empty-variants"])
def test_workflow_stops_before_any_job(tmp_path, name):
    change, key = BAD_CONFIGS[name]
    workdir = workflow_copy(tmp_path, broken(change))
    result = snakemake(workdir)
    assert result.returncode != 0
    assert key in result.stdout + result.stderr
    assert not (workdir / "results").exists()


def test_every_named_figure_and_table_has_its_function_and_layout():
    from asrcompress import plots, report_names, results_tables

    assert tuple(plots.FIGURES) == report_names.FIGURES
    assert set(results_tables.LAYOUTS) == set(report_names.TABLE_LAYOUTS)


def test_an_unknown_study_table_names_its_key():
    config = broken(lambda c: c.setdefault("report", {}).update(tables=["grid", "E9"]))
    with pytest.raises(ConfigError, match=r"report\.tables\[1\].*'E9' is not one of grid, E1"):
        check_schema(config, SCHEMA)


def test_methods_demo_shares_the_demo_data_and_model_and_covers_every_method():
    """config/demo_methods.yaml reuses what `make demo` built: any drift would retrain the baseline."""
    import yaml

    from asrcompress.compression.registry import METHODS
    from asrcompress.config import build_grid, check_schema

    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    methods = yaml.safe_load((REPO / "config" / "demo_methods.yaml").read_text())
    for key in ("seed", "sample_rate", "on_bad_audio", "corpus", "banks", "models", "finetune"):
        assert methods[key] == demo[key], key
    check_schema(methods, REPO / "workflow" / "schemas" / "config.schema.yaml")
    grid = build_grid(methods)
    assert {step.method for variant in grid.variants for step in variant.steps} == set(METHODS)
    assert methods["report"]["name"] and not demo.get("report", {}).get("name")


def test_every_registered_method_is_documented():
    from asrcompress.compression.registry import METHODS, get

    get("none")  # loads every family module
    documented = (REPO / "docs" / "compression.md").read_text()
    missing = [name for name in METHODS if f"`{name}`" not in documented]
    assert not missing, f"docs/compression.md does not describe {missing}"


def test_a_variant_that_trains_needs_the_training_splits(tmp_path):
    import yaml

    config = yaml.safe_load((REPO / "config" / "studies" / "E1_pimentel.yaml").read_text())
    build_grid(config)  # static int8 calibrates on E1's train split
    del config["corpus"]["splits"]["train"]
    with pytest.raises(ConfigError, match=r"corpus.splits.*static_int8 needs the train split"):
        build_grid(config)
    config = yaml.safe_load((REPO / "config" / "studies" / "E3_usm_lite.yaml").read_text())
    del config["corpus"]["splits"]["dev"]
    with pytest.raises(ConfigError, match=r"corpus.splits.*needs the dev split"):
        build_grid(config)
