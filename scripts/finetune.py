from asrcompress import logs
from asrcompress.distributed import launch
from asrcompress.finetune import finetune_model

logs.to_file(snakemake.log[0])
inputs, p = snakemake.input, snakemake.params
launch(
    finetune_model,
    dict(
        model_name=snakemake.wildcards.model,
        model_entry=p.model,
        training=p.training,
        train_manifest=f"{inputs.train}/manifest.jsonl" if "train" in inputs.keys() else None,
        dev_manifest=f"{inputs.dev}/manifest.jsonl" if "dev" in inputs.keys() else None,
        out_dir=snakemake.output[0],
        checkpoint_dir=p.checkpoints,
        sample_rate=p.sample_rate,
        seed=p.seed,
        threads=snakemake.threads // max(1, snakemake.resources.gpu),
        source=inputs.source if "source" in inputs.keys() else None,
    ),
    processes=snakemake.resources.gpu,
    key="finetune.gpus",
    log_path=snakemake.log[0],
)
