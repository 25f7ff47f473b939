from asrcompress import logs
from asrcompress.export import export_variant

logs.to_file(snakemake.log[0])
onnx, cost = snakemake.params.onnx, snakemake.params.cost
export_variant(
    variant_dir=snakemake.input.variant,
    check_manifest=f"{snakemake.input.check}/manifest.jsonl",
    out_dir=snakemake.output[0],
    sample_rate=snakemake.params.sample_rate,
    opset=onnx["opset"],
    check_utterances=onnx["check_utterances"],
    logits_atol=onnx["logits_atol"],
    cost_seconds=cost["seconds"],
    cost_repeats=cost["repeats"],
    cost_threads=cost["threads"],
    threads=snakemake.threads,
)
