import os

from asrcompress import logs
from asrcompress.lm import LanguageModelSpec, build_language_model

logs.to_file(snakemake.log[0])
spec = LanguageModelSpec(**{**snakemake.params.lm["spec"], "prune": tuple(snakemake.params.lm["spec"]["prune"])})
train = snakemake.input.get("train")
build_language_model(
    spec,
    os.path.dirname(snakemake.output.arpa),
    train_manifest=f"{train}/manifest.jsonl" if train else None,
    lmplz=snakemake.params.lm["lmplz"],
    memory_mb=snakemake.resources.mem_mb,
)
