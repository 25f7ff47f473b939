# Config -> job grid, and the input/params functions the rules share.
import os
import sys

# The library in src/ is importable here and in every job, installed or not (conda envs, clusters).
LIBRARY = os.path.join(workflow.basedir, "src")
sys.path.insert(0, LIBRARY)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [LIBRARY, os.environ.get("PYTHONPATH")])))

from asrcompress.config import build_grid, check_schema
from asrcompress.conditions import Condition


check_schema(config, workflow.source_path("schemas/config.schema.yaml"))
validate(config, "schemas/config.schema.yaml")  # fills the schema's defaults
GRID = build_grid(config)

CONDITION_RE = r"clean|noise/[^/]+/[^/]+|reverb/[^/]+|noise\+reverb/[^/]+/[^/]+/[^/]+"


wildcard_constraints:
    split="train|dev|test",
    model=r"[A-Za-z0-9_.-]+",
    variant=r"[A-Za-z0-9_.~-]+",
    condition=CONDITION_RE,
    noise=r"[a-z]+",
    rt60=r"[0-9.]+",
    figure=r"[a-z_]+",


# The keys of asrcompress.plots.FIGURES, not imported: matplotlib would slow every dry run.
FIGURES = ["wer_vs_snr", "wer_per_condition", "wer_vs_sparsity", "wer_vs_size"]


def cells():
    """(model, variant id, condition id) for every decode/score job."""
    return [(m, v.id, c.id) for m in GRID.models for v in GRID.variants for c in GRID.conditions]


def final_outputs():
    return ["results/tables/wer.csv", *expand("results/figures/{figure}.png", figure=FIGURES)]


def demo_split_params(wildcards):
    demo = config["corpus"]["demo"]
    split = demo["splits"][wildcards.split]
    return {
        "n_utterances": split["n_utterances"],
        "voices": split["voices"],
        "rates_wpm": demo["rates_wpm"],
        "pitches": demo["pitches"],
        "words_per_sentence": demo["words_per_sentence"],
        "sample_rate": config["sample_rate"],
        "seed": config["seed"],
    }


def noise_bank_params(wildcards):
    bank = config["banks"]["noise"]
    params = {k: bank[k] for k in ("n_files", "seconds")}
    if wildcards.noise == "babble":  # only babble depends on the talkers
        params.update(babble_voices=bank["babble_voices"], babble_talkers=bank["babble_talkers"])
    return {**params, "sample_rate": config["sample_rate"], "seed": config["seed"]}


def condition_inputs(wildcards):
    condition = Condition.parse(wildcards.condition)
    inputs = {"test": "results/data/test"}
    if condition.uses_noise:
        inputs["noise_bank"] = f"results/banks/noise/{condition.noise}"
    if condition.uses_reverb:
        inputs["rir_bank"] = f"results/banks/rir/{condition.rt60_s:g}"
    return inputs


def model_params(wildcards):
    return config["models"][wildcards.model]


def variant_params(wildcards):
    """The config entry that made this variant (method, level, method parameters)."""
    for variant in GRID.variants:
        if variant.id == wildcards.variant:
            return {"method": variant.method, "level": variant.level, "params": dict(variant.params)}
    raise ValueError(f"variant {wildcards.variant!r} is not in config.compression")


def aggregate_inputs(wildcards):
    return {
        "scores": [f"results/scores/{m}/{v}/{c}.json" for m, v, c in cells()],
        "timings": [f"results/hyps/{m}/{v}/{c}.timing.json" for m, v, c in cells()],
        "variants": [f"results/variants/{m}/{v}" for m, v, c in cells()],
        "conditions": [f"results/conditions/{c}" for m, v, c in cells()],
    }
