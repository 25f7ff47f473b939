from asrcompress import logs
from asrcompress.decode_stage import TestSetJob, decode_test_sets
from asrcompress.search import DecoderSpec

logs.to_file(snakemake.log[0])
decoders = [DecoderSpec(**entry) for entry in snakemake.params.decoders]
decode_test_sets(
    variant_dir=snakemake.input.variant,
    jobs=[TestSetJob.from_json(entry) for entry in snakemake.params.test_sets],
    sample_rate=snakemake.params.sample_rate,
    batch_seconds=snakemake.params.batch_seconds,
    max_padding=snakemake.params.max_padding,
    precision=snakemake.params.precision,
    gpu_batch_seconds=snakemake.params.gpu_batch_seconds,
    compile=snakemake.params.compile,
    onnx_dir=snakemake.input.onnx if snakemake.params.backend == "onnxruntime" else None,
    threads=snakemake.threads,
    decoders=decoders,
    lm_paths={name: getattr(snakemake.input, name) for name in {d.language_model for d in decoders if d.language_model}},
)
