# Stage 5: CTC decoding of every (variant, condition) pair, every configured decoder from one forward pass.


rule decode:
    """Transcribe one condition's test set with one variant (greedy and/or LM beam search); records timings."""
    input:
        unpack(decode_lm_inputs),
        variant="results/variants/{model}/{variant}",
        condition="results/conditions/{condition}",
    output:
        **{f"hyps_{d}": f"results/hyps/{{model}}/{{variant}}/{d}/{{condition}}.jsonl" for d in DECODERS},
        timing="results/timings/{model}/{variant}/{condition}.json",
    params:
        batch_seconds=config["decode"]["batch_seconds"],
        max_padding=config["decode"]["max_padding"],
        gpu_batch_seconds=config["decode"]["gpu_batch_seconds"],
        precision=config["decode"]["precision"],
        compile=config["decode"]["compile"],
        sample_rate=config["sample_rate"],
        decoders=[d.to_json() for d in GRID.decoders],
    threads: decode_threads
    resources:
        mem_mb=scaled_memory(8000),
        gpu=decode_gpus,
    conda:
        "../envs/torch.yaml"
    log:
        "logs/decode/{model}/{variant}/{condition}.log",
    benchmark:
        "benchmarks/decode/{model}/{variant}/{condition}.tsv"
    script:
        "../scripts/decode.py"
