from asrcompress import logs
from asrcompress.finetune import finetune_model

logs.to_file(snakemake.log[0])
inputs, p = snakemake.input, snakemake.params
finetune_model(
    model_name=snakemake.wildcards.model,
    model_entry=p.model,
    training=p.training,
    train_manifest=f"{inputs.train}/manifest.jsonl" if "train" in inputs.keys() else None,
    dev_manifest=f"{inputs.dev}/manifest.jsonl" if "dev" in inputs.keys() else None,
    out_dir=snakemake.output[0],
    checkpoint_dir=p.checkpoints,
    sample_rate=p.sample_rate,
    seed=p.seed,
    threads=snakemake.threads,
    source=inputs.source if "source" in inputs.keys() else None,
)
