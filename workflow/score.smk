# Stage 6: WER/CER with S/D/I and bootstrap confidence intervals.


rule score:
    """Score one decoded test set: summary JSON and per-utterance TSV (worst first)."""
    input:
        hyps="results/hyps/{model}/{variant}/{condition}.jsonl",
    output:
        summary="results/scores/{model}/{variant}/{condition}.json",
        utterances="results/scores/{model}/{variant}/{condition}.utts.tsv",
    params:
        bootstrap_resamples=config["score"]["bootstrap_resamples"],
        seed=config["seed"],
    conda:
        "../envs/asrcompress.yaml"
    log:
        "logs/score/{model}/{variant}/{condition}.log",
    benchmark:
        "benchmarks/score/{model}/{variant}/{condition}.tsv"
    script:
        "../scripts/score.py"
