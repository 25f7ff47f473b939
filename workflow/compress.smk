# Stage 4: every compression variant of every fine-tuned model, through one registry.


rule compress:
    """Apply one compression method at one level; writes the variant folder and its card."""
    input:
        baseline="results/models/{model}/baseline",
    output:
        directory("results/variants/{model}/{variant}"),
    params:
        variant=variant_params,
        seed=config["seed"],
    conda:
        "../envs/asrcompress.yaml"
    log:
        "logs/compress/{model}/{variant}.log",
    benchmark:
        "benchmarks/compress/{model}/{variant}.tsv"
    script:
        "../scripts/compress.py"
