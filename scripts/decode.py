from asrcompress import logs
from asrcompress.decoding import decode_test_set
from asrcompress.search import DecoderSpec

logs.to_file(snakemake.log[0])
decoders = [DecoderSpec(**entry) for entry in snakemake.params.decoders]
decode_test_set(
    variant_dir=snakemake.input.variant,
    condition_manifest=f"{snakemake.input.condition}/manifest.jsonl",
    hyps_path={d.name: getattr(snakemake.output, f"hyps_{d.name}") for d in decoders},
    timing_path=snakemake.output.timing,
    sample_rate=snakemake.params.sample_rate,
    batch_seconds=snakemake.params.batch_seconds,
    max_padding=snakemake.params.max_padding,
    precision=snakemake.params.precision,
    gpu_batch_seconds=snakemake.params.gpu_batch_seconds,
    compile=snakemake.params.compile,
    threads=snakemake.threads,
    decoders=decoders,
    lm_paths={name: getattr(snakemake.input, name) for name in {d.language_model for d in decoders if d.language_model}},
)
