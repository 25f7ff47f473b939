# Stage 4: every compression variant of every fine-tuned model, through one registry.


rule compress:
    """Apply one chain of compression steps (with recovery fine-tuning when configured); writes the
    variant folder and its card with measured cost (size, GMACs, CPU latency on a fixed input)."""
    input:
        unpack(compress_inputs),
    output:
        directory("results/variants/{model}/{variant}"),
    params:
        recipe=variant_params,
        training=variant_training,
        cost=config["cost"],
        sample_rate=config["sample_rate"],
        seed=config["seed"],
        checkpoints="results/checkpoints/{model}/{variant}",
    threads: compress_threads
    resources:
        mem_mb=compress_memory,
        gpu=compress_gpus,
    conda:
        "../envs/torch.yaml"
    log:
        "logs/compress/{model}/{variant}.log",
    benchmark:
        "results/benchmarks/compress/{model}/{variant}.tsv"
    script:
        "../scripts/compress.py"
