from asrcompress import logs
from asrcompress.compression.registry import Variant
from asrcompress.compression.store import compress
from asrcompress.distributed import launch

logs.to_file(snakemake.log[0])
inputs, p = snakemake.input, snakemake.params
launch(
    compress,
    dict(
        baseline_dir=inputs.baseline,
        variant=Variant.from_json(p.recipe),
        out_dir=snakemake.output[0],
        seed=p.seed,
        sample_rate=p.sample_rate,
        training=p.training,
        train_manifest=f"{inputs.train}/manifest.jsonl" if "train" in inputs.keys() else None,
        dev_manifest=f"{inputs.dev}/manifest.jsonl" if "dev" in inputs.keys() else None,
        checkpoint_dir=p.checkpoints,
        threads=snakemake.threads // max(1, snakemake.resources.gpu),
        cost_seconds=p.cost["seconds"],
        cost_repeats=p.cost["repeats"],
        cost_threads=p.cost["threads"],
    ),
    processes=snakemake.resources.gpu,
    key="finetune.gpus",
    log_path=snakemake.log[0],
)
