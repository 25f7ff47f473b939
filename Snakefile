# asrcompress: compression x acoustic mismatch for self-supervised CTC speech models.
# The logic lives in src/asrcompress; this file only wires the stages together.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/common.smk"


include: "workflow/download.smk"
include: "workflow/data.smk"
include: "workflow/augment.smk"
include: "workflow/finetune.smk"
include: "workflow/compress.smk"
include: "workflow/decode.smk"
include: "workflow/score.smk"
include: "workflow/report.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
