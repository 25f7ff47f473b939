from asrcompress import logs
from asrcompress.decoding import decode_test_set

logs.to_file(snakemake.log[0])
decode_test_set(
    variant_dir=snakemake.input.variant,
    condition_manifest=f"{snakemake.input.condition}/manifest.jsonl",
    hyps_path=snakemake.output.hyps,
    timing_path=snakemake.output.timing,
    sample_rate=snakemake.params.sample_rate,
    batch_seconds=snakemake.params.batch_seconds,
    threads=snakemake.threads,
)
