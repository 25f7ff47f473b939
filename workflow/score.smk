# Stage 6: WER/CER with S/D/I, bootstrap confidence intervals, sclite files and alignments.


rule score:
    """Score one decoded test set: summary JSON (overall and per corpus subset), per-utterance TSV worst first,
    sclite-compatible ref/hyp trn files, and per-utterance alignments (.pra, worst first)."""
    input:
        hyps="results/hyps/{model}/{variant}/{decoder}/{condition}.jsonl",
    output:
        summary="results/scores/{model}/{variant}/{decoder}/{condition}.json",
        utterances="results/scores/{model}/{variant}/{decoder}/{condition}.utts.tsv",
        ref_trn="results/scores/{model}/{variant}/{decoder}/{condition}.ref.trn",
        hyp_trn="results/scores/{model}/{variant}/{decoder}/{condition}.hyp.trn",
        alignments="results/scores/{model}/{variant}/{decoder}/{condition}.pra",
    params:
        bootstrap_resamples=config["score"]["bootstrap_resamples"],
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/report.yaml"
    log:
        "logs/score/{model}/{variant}/{decoder}/{condition}.log",
    benchmark:
        "benchmarks/score/{model}/{variant}/{decoder}/{condition}.tsv"
    script:
        "../scripts/score.py"
