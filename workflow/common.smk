# Config -> job grid, and the input/params functions the rules share.
import dataclasses
import os
import re
import sys

# The library in src/ is importable here and in every job, installed or not (conda envs, clusters).
LIBRARY = os.path.join(workflow.basedir, "src")
sys.path.insert(0, LIBRARY)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [LIBRARY, os.environ.get("PYTHONPATH")])))

from asrcompress.catalog import load_catalog
from asrcompress.config import build_grid, check_schema
from asrcompress.conditions import Condition, RandomProtocol
from asrcompress.models import ModelSpec
from asrcompress.report_names import FIGURES, TABLE_LAYOUTS


check_schema(config, workflow.source_path("schemas/config.schema.yaml"))
validate(config, "schemas/config.schema.yaml")  # fills the schema's defaults
NEEDS_CATALOG = config["corpus"]["kind"] == "catalog" or bool(config["banks"].get("corpora"))
CATALOG = load_catalog(config["catalog"]) if NEEDS_CATALOG else None
GRID = build_grid(config, CATALOG)

CONDITION_RE = r"clean|noise/[^/]+/[^/]+|reverb/[^/]+|noise\+reverb/[^/]+/[^/]+/[^/]+|random/[^/]+"


def one_of(names):
    """A wildcard pattern matching exactly these names (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in sorted(set(names))) or "(?!)"


wildcard_constraints:
    split="train|dev|test",
    model=r"[A-Za-z0-9_.-]+",
    variant=r"[A-Za-z0-9_.~+-]+",
    condition=CONDITION_RE,
    noise="white|pink|brown|babble",
    rt60=r"[0-9.]+",
    figure=r"[a-z_]+",
    decoder=one_of(d.name for d in GRID.decoders),
    lm=one_of(GRID.language_models),
    bank_kind="noise|rir",
    bank=one_of(GRID.corpus_banks),
    dataset=one_of(a.dataset for a in GRID.archives),
    archive=one_of(a.name for a in GRID.archives),
    filename=one_of(a.filename for a in GRID.archives),


DECODERS = [d.name for d in GRID.decoders]


def cells():
    """(model, variant id, decoder, condition id) for every scored test set."""
    return [(m, v.id, d, c.id) for m in GRID.models for v in GRID.variants for d in DECODERS for c in GRID.conditions]


# report.name keeps the tables and figures of several experiments on one results/ tree apart
# (variants, conditions and the fine-tuned models they share are built once).
REPORT_NAME = config["report"]["name"]
TABLE_DIR = os.path.join("results", "tables", REPORT_NAME) if REPORT_NAME else "results/tables"
TABLE = os.path.join(TABLE_DIR, "wer.csv")
FIGURE_DIR = os.path.join("results", "figures", REPORT_NAME) if REPORT_NAME else "results/figures"
REPORT_LOGS = os.path.join("report", REPORT_NAME) if REPORT_NAME else "report"
RESULTS_MD = f"results/RESULTS.{REPORT_NAME}.md" if REPORT_NAME else "results/RESULTS.md"
STUDY_TABLES = config["report"]["tables"]
# The report groups everything by experiment, then by stage.
REPORT_CATEGORY = config["report"]["title"] or REPORT_NAME or "demo"


def final_outputs():
    galleries = [f"results/gallery/{c.id}" for c in GRID.conditions] if config["report"]["gallery_examples"] else []
    return [
        TABLE,
        RESULTS_MD,
        f"{TABLE_DIR}/config.yaml",
        *expand("{dir}/{layout}.md", dir=TABLE_DIR, layout=STUDY_TABLES),
        *expand("{dir}/{figure}.{ext}", dir=FIGURE_DIR, figure=FIGURES, ext=["png", "pdf"]),
        *galleries,
    ]


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


def random_protocol(wildcards):
    """The parameters of a ``random/<protocol>`` condition; empty for grid conditions."""
    condition = Condition.parse(wildcards.condition)
    return config["conditions"]["random"][condition.protocol] if condition.kind == "random" else {}


def condition_inputs(wildcards):
    condition = Condition.parse(wildcards.condition)
    if condition.kind == "random":
        protocol = RandomProtocol.from_config(condition.protocol, random_protocol(wildcards))
        noise, rir = list(protocol.noise), protocol.rir if protocol.uses_reverb else None
    else:
        noise, rir = [condition.noise] if condition.noise else [], condition.rir
    inputs = {"test": "results/data/test"}
    if noise:
        inputs["noise_banks"] = [f"results/banks/noise/{name}" for name in noise]
    if rir:
        inputs["rir_bank"] = f"results/banks/rir/{rir}"
    return inputs


def model_params(wildcards):
    return config["models"][wildcards.model]


def finetune_inputs(wildcards):
    """Training data only for models that are fine-tuned; the pretrained folder for pretrained ones.
    Checkpoints are marked ancient: a re-fetch or a touched folder must not retrain by mtime alone."""
    spec = ModelSpec.from_config(wildcards.model, config["models"][wildcards.model])
    inputs = {"train": "results/data/train", "dev": "results/data/dev"} if spec.finetune else {}
    if spec.source:
        inputs["source"] = ancient(spec.source)
    return inputs


def hub_model_params(wildcards):
    entry = config["models"][wildcards.model]
    return {"pretrained_id": entry["pretrained_id"], "revision": entry.get("revision")}


def archive_checksums(wildcards):
    """Only what defines the file: a new mirror or URL in the catalog must not re-download 30 GB."""
    archive = CATALOG.archive_by_filename(wildcards.dataset, wildcards.filename)
    return {"sha256": archive.sha256, "md5": archive.md5}


def extracted_archive(wildcards):
    return ancient(CATALOG.archive(wildcards.dataset, wildcards.archive).marker_path)


def split_inputs(wildcards):
    return [ancient(d) for d in sorted({s.archive.extract_dir for s in GRID.splits[wildcards.split]})]


def split_params(wildcards):
    split = config["corpus"]["splits"][wildcards.split]
    return {
        "roots_by_subset": {s.ref: s.roots for s in GRID.splits[wildcards.split]},
        "max_utterances": split.get("max_utterances"),
        "partial_transcripts": [s.ref for s in GRID.splits[wildcards.split] if s.partial_transcripts],
        "seed": config["seed"],
    }


def corpus_bank_input(wildcards):
    bank = GRID.corpus_banks[wildcards.bank]
    return ancient(bank.subset.archive.extract_dir if bank.subset else bank.options["folder"])


def corpus_bank_params(wildcards):
    bank = GRID.corpus_banks[wildcards.bank]
    license = CATALOG.datasets[bank.subset.dataset].license if bank.subset else bank.options.get("license")
    return {"layout": bank.layout, "subset": bank.subset.name if bank.subset else None, "roots": bank.roots,
            "options": bank.options, "kind": bank.kind, "license": license, "seed": config["seed"],
            "sample_rate": config["sample_rate"]}


VARIANTS = {variant.id: variant for variant in GRID.variants}


def variant_of(wildcards):
    if wildcards.variant not in VARIANTS:
        raise ValueError(f"variant {wildcards.variant!r} is not in config.compression")
    return VARIANTS[wildcards.variant]


def variant_params(wildcards):
    """The recipe that makes this variant: steps with their resolved parameters, and recovery; and the versions
    of its methods' implementations beyond the first, so a new implementation rebuilds only its own variants."""
    variant = variant_of(wildcards)
    newer = {method: version for method, version in variant.versions.items() if version > 1}
    return {**variant.to_json(), **({"versions": newer} if newer else {})}


# How many GPUs a training job spreads over is the job's resource, not part of its recipe: changing it reruns
# nothing, and a run resumes from its checkpoint on another count (the global batch stays batch_seconds).
TRAINING_RECIPE = {k: v for k, v in config["finetune"].items() if k != "gpus"}


def variant_training(wildcards):
    """The base training recipe, only for variants that train (so editing it rebuilds only those)."""
    return TRAINING_RECIPE if variant_of(wildcards).trains else {}


# What each job asks a scheduler for (local, SLURM or any other executor). A profile may raise these; memory
# grows with each retry, so a job killed for memory gets more on its next attempt.
GPUS_PER_JOB = config["gpus_per_job"]
TRAINING_GPUS = config["finetune"]["gpus"] if GPUS_PER_JOB else 0
TRAINING_THREADS = 8 * max(1, TRAINING_GPUS)  # 8 CPU cores feed each training process


def scaled_memory(mb):
    return lambda wildcards, attempt: mb * attempt


def compress_threads(wildcards):
    """Training variants get the fine-tuning job's threads; the cost is timed on cost.threads either way."""
    return TRAINING_THREADS if variant_of(wildcards).trains else config["cost"]["threads"]


def compress_memory(wildcards, attempt):
    return (16000 if variant_of(wildcards).trains else 8000) * attempt


def compress_gpus(wildcards):
    """A GPU for training, and for timing a variant's GPU latency (card.json); a variant with CPU kernels only
    that does not train (PTQ int8) has nothing to do on one."""
    variant = variant_of(wildcards)
    return TRAINING_GPUS if variant.trains else 0 if variant.cpu_only else GPUS_PER_JOB


def decode_gpus(wildcards):
    """Variants whose kernels exist on the CPU only (the int8 graphs) decode there, without holding a GPU; so does
    every variant under decode.backend onnxruntime (the CPU provider; a variant whose export failed falls back to
    torch on the CPU too)."""
    return 0 if variant_of(wildcards).cpu_only or DECODE_BACKEND == "onnxruntime" else GPUS_PER_JOB


# Scoring takes seconds, and so does a CPU decode of a small test set: on a cluster, a CPU decode job and the
# score jobs of its hypotheses form one unit of the "evaluation" group, and the profile's group-components sends
# several units to one allocation (one submission, one wait for the scheduler, decode then score). GPU decodes
# are not grouped: the jobs of a group share one allocation, and each would take its first GPU; their score jobs
# still are, among themselves.
DECODE_GROUP = None if GPUS_PER_JOB else "evaluation"


def decode_threads(wildcards):
    """A CPU decode runs one thread per job (jobs run side by side); a GPU decode needs a few to feed the GPU."""
    return 4 if decode_gpus(wildcards) else 1


def compress_inputs(wildcards):
    """The training split only for variants that calibrate or fine-tune."""
    variant = variant_of(wildcards)
    inputs = {"baseline": f"results/models/{wildcards.model}/baseline"}
    if variant.needs_training_data:
        inputs["train"] = "results/data/train"
    if variant.trains:
        inputs["dev"] = "results/data/dev"
    return inputs


ONNX_EXPORT = config["onnx"]["export"]
DECODE_BACKEND = config["decode"]["backend"]
# The export check's transcripts come from the clean test set (the first condition when the grid has no clean one).
ONNX_CHECK_CONDITION = next((c.id for c in GRID.conditions if c.id == "clean"), GRID.conditions[0].id)

DECODE_PER_VARIANT = config["decode"]["one_job_per"] == "variant"
# A decode job's test sets: every condition (one job per variant), or the one its wildcard names.
DECODE_CONDITIONS = [c.id for c in GRID.conditions] if DECODE_PER_VARIANT else ["{condition}"]
DECODE_JOB = "{model}/{variant}" if DECODE_PER_VARIANT else "{model}/{variant}/{condition}"


def decode_test_sets(wildcards):
    """What the decode job writes per test set (asrcompress.decode_stage.TestSetJob records)."""
    conditions = DECODE_CONDITIONS if DECODE_PER_VARIANT else [wildcards.condition]
    base = f"{wildcards.model}/{wildcards.variant}"
    return [{"manifest": f"results/conditions/{c}/manifest.jsonl",
             "hyps_paths": {d: f"results/hyps/{base}/{d}/{c}.jsonl" for d in DECODERS},
             "timing_path": f"results/timings/{base}/{c}.json"} for c in conditions]


SCORE_PER_VARIANT = config["score"]["one_job_per"] == "variant"
# A score job's test sets: every (decoder, condition) of its variant, or the one its wildcards name.
SCORE_CONDITIONS = [c.id for c in GRID.conditions] if SCORE_PER_VARIANT else ["{condition}"]
SCORE_DECODERS = DECODERS if SCORE_PER_VARIANT else ["{decoder}"]
SCORE_JOB = "{model}/{variant}" if SCORE_PER_VARIANT else "{model}/{variant}/{decoder}/{condition}"


def score_test_sets(wildcards):
    """What the score job writes per test set (asrcompress.scoring.ScoreJob records)."""
    cells = ([(d, c) for d in SCORE_DECODERS for c in SCORE_CONDITIONS] if SCORE_PER_VARIANT
             else [(wildcards.decoder, wildcards.condition)])
    base = f"{wildcards.model}/{wildcards.variant}"
    return [{"hyps_path": f"results/hyps/{base}/{d}/{c}.jsonl", "summary_path": f"results/scores/{base}/{d}/{c}.json",
             "per_utt_path": f"results/scores/{base}/{d}/{c}.utts.tsv", "ref_trn": f"results/scores/{base}/{d}/{c}.ref.trn",
             "hyp_trn": f"results/scores/{base}/{d}/{c}.hyp.trn", "alignments": f"results/scores/{base}/{d}/{c}.pra"}
            for d, c in cells]


def decode_onnx_input(wildcards):
    """decode.backend onnxruntime: the variant's export folder (its graph decodes when its check passed)."""
    return {"onnx": f"results/onnx/{wildcards.model}/{wildcards.variant}"} if DECODE_BACKEND == "onnxruntime" else {}


def decode_lm_inputs(wildcards):
    """Every language model a decoder uses: its ARPA file (the binary beside it comes along)."""
    inputs = {name: f"results/lm/{name}/lm.arpa" for name in GRID.language_models}
    return {**inputs, **{f"{name}_binary": f"results/lm/{name}/lm.bin" for name in GRID.language_models}}


def language_model_params(wildcards):
    spec = GRID.language_models[wildcards.lm]
    return {"spec": dataclasses.asdict(spec), "lmplz": config["decode"]["lmplz"]}


def lm_training_inputs(wildcards):
    """The training split for an LM estimated from its transcripts. A user's text or ARPA file is read by the job
    (which names it when it is missing) rather than declared: a study must plan before its LM is fetched."""
    spec = GRID.language_models[wildcards.lm]
    return {"train": "results/data/train"} if spec.source == "train" else {}


def aggregate_inputs(wildcards):
    exports = {"exports": [f"results/onnx/{m}/{v}" for m, v, d, c in cells()]} if ONNX_EXPORT else {}
    return {
        **exports,
        "scores": [f"results/scores/{m}/{v}/{d}/{c}.json" for m, v, d, c in cells()],
        "utterances": [f"results/scores/{m}/{v}/{d}/{c}.utts.tsv" for m, v, d, c in cells()],
        "timings": [f"results/timings/{m}/{v}/{c}.json" for m, v, d, c in cells()],
        "variants": [f"results/variants/{m}/{v}" for m, v, d, c in cells()],
        "conditions": [f"results/conditions/{c}" for m, v, d, c in cells()],
    }
