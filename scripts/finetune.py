from asrcompress import logs
from asrcompress.finetune import finetune_model

logs.to_file(snakemake.log[0])
p = snakemake.params
finetune_model(
    model_name=snakemake.wildcards.model,
    model_entry=p.model,
    training=p.training,
    train_manifest=f"{snakemake.input.train}/manifest.jsonl",
    dev_manifest=f"{snakemake.input.dev}/manifest.jsonl",
    out_dir=snakemake.output[0],
    checkpoint_dir=p.checkpoints,
    sample_rate=p.sample_rate,
    seed=p.seed,
    threads=snakemake.threads,
)
