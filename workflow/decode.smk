# Stage 5: greedy CTC decoding of every (variant, condition) pair.


rule decode:
    """Transcribe one condition's test set with one variant; records the real-time factor."""
    input:
        variant="results/variants/{model}/{variant}",
        condition="results/conditions/{condition}",
    output:
        hyps="results/hyps/{model}/{variant}/{condition}.jsonl",
        timing="results/hyps/{model}/{variant}/{condition}.timing.json",
    params:
        batch_seconds=config["decode"]["batch_seconds"],
        sample_rate=config["sample_rate"],
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/asrcompress.yaml"
    log:
        "logs/decode/{model}/{variant}/{condition}.log",
    benchmark:
        "benchmarks/decode/{model}/{variant}/{condition}.tsv"
    script:
        "../scripts/decode.py"
