# Stage 4b: word n-gram language models for beam-search decoding (only those a decoder uses).


rule language_model:
    """Estimate (lmplz, modified Kneser-Ney) or copy in one n-gram LM, and its KenLM binary for decoding."""
    input:
        unpack(lm_training_inputs),
    output:
        arpa="results/lm/{lm}/lm.arpa",
        binary="results/lm/{lm}/lm.bin",
        summary="results/lm/{lm}/summary.json",
    params:
        lm=language_model_params,
    resources:
        mem_mb=scaled_memory(8000),
    conda:
        "../envs/lm.yaml"
    log:
        "logs/lm/{lm}.log",
    benchmark:
        "results/benchmarks/lm/{lm}.tsv"
    script:
        "../scripts/language_model.py"
