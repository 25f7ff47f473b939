# Stage 5: CTC decoding of every (variant, condition) pair, every configured decoder from one forward pass.
# decode.one_job_per: "condition" makes a job per (variant, condition); "variant" decodes all of a variant's
# conditions in one job, paying the torch/transformers import and the model load once (small test sets).


rule decode:
    """Transcribe test sets with one variant (greedy and/or LM beam search); records timings per test set."""
    input:
        unpack(decode_lm_inputs),
        unpack(decode_onnx_input),
        variant="results/variants/{model}/{variant}",
        conditions=expand("results/conditions/{condition}", condition=DECODE_CONDITIONS),
    output:
        hyps=expand("results/hyps/{{model}}/{{variant}}/{decoder}/{condition}.jsonl", decoder=DECODERS, condition=DECODE_CONDITIONS),
        timings=expand("results/timings/{{model}}/{{variant}}/{condition}.json", condition=DECODE_CONDITIONS),
    params:
        test_sets=decode_test_sets,
        batch_seconds=config["decode"]["batch_seconds"],
        max_padding=config["decode"]["max_padding"],
        gpu_batch_seconds=config["decode"]["gpu_batch_seconds"],
        precision=config["decode"]["precision"],
        compile=config["decode"]["compile"],
        backend=DECODE_BACKEND,
        sample_rate=config["sample_rate"],
        decoders=[d.to_json() for d in GRID.decoders],
    threads: decode_threads
    resources:
        mem_mb=scaled_memory(8000),
        gpu=decode_gpus,
    group:
        DECODE_GROUP
    conda:
        "../envs/torch.yaml"
    log:
        f"logs/decode/{DECODE_JOB}.log",
    benchmark:
        f"results/benchmarks/decode/{DECODE_JOB}.tsv"
    script:
        "../scripts/decode.py"
