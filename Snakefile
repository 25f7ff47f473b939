# asrcompress: compression x acoustic mismatch for self-supervised CTC speech models.
# The logic lives in src/asrcompress; this file only wires the stages together.
from snakemake.utils import min_version, validate

min_version("9.0")


# A study config given with --configfile replaces the demo config instead of being merged into it.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/common.smk"


include: "workflow/download.smk"
include: "workflow/data.smk"
include: "workflow/augment.smk"
include: "workflow/finetune.smk"
include: "workflow/compress.smk"
include: "workflow/export.smk"
include: "workflow/lm.smk"
include: "workflow/decode.smk"
include: "workflow/score.smk"
include: "workflow/report.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
