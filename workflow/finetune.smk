# Stage 3: CTC fine-tuning of each model on the clean training split.


rule finetune:
    """Fine-tune one model; resumes from results/checkpoints/{model} after a kill."""
    input:
        unpack(finetune_inputs),
    output:
        directory("results/models/{model}/baseline"),
    params:
        model=model_params,
        training=TRAINING_RECIPE,
        sample_rate=config["sample_rate"],
        seed=config["seed"],
        checkpoints="results/checkpoints/{model}",
    threads: TRAINING_THREADS
    resources:
        mem_mb=scaled_memory(16000),
        gpu=TRAINING_GPUS,
    conda:
        "../envs/torch.yaml"
    log:
        "logs/finetune/{model}.log",
    benchmark:
        "results/benchmarks/finetune/{model}.tsv"
    script:
        "../scripts/finetune.py"
