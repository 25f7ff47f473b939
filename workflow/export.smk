# Stage 4b: every variant as an ONNX graph run by ONNX Runtime's CPU provider (asrcompress.export): checked
# against the torch variant (logits, greedy transcripts), timed on the cost input beside it. A variant that
# cannot export gets a record naming the operator; the job succeeds and the rest of the DAG runs.


rule export_onnx:
    """Export one variant to ONNX, check it against the torch variant and time it (export.json, model.onnx)."""
    input:
        variant="results/variants/{model}/{variant}",
        check=f"results/conditions/{ONNX_CHECK_CONDITION}",
    output:
        directory("results/onnx/{model}/{variant}"),
    params:
        onnx=config["onnx"],
        cost=config["cost"],
        sample_rate=config["sample_rate"],
    threads: config["cost"]["threads"]  # the latencies are timed on cost.threads, as the compress job's are
    resources:
        mem_mb=scaled_memory(4000),
    group:
        "evaluation"  # seconds each, on a CPU: grouped with the decode and score jobs on a cluster
    conda:
        "../envs/torch.yaml"
    log:
        "logs/export_onnx/{model}/{variant}.log",
    benchmark:
        "results/benchmarks/export_onnx/{model}/{variant}.tsv"
    script:
        "../scripts/export_onnx.py"
