from asrcompress import logs
from asrcompress.compression.registry import Variant
from asrcompress.compression.store import compress

logs.to_file(snakemake.log[0])
v = snakemake.params.variant
variant = Variant(v["method"], v["level"], tuple(sorted(v["params"].items())))
compress(snakemake.input.baseline, variant, snakemake.output[0], seed=snakemake.params.seed)
