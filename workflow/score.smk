# Stage 6: WER/CER with S/D/I, bootstrap confidence intervals, sclite files and alignments.
# score.one_job_per: "condition" makes a job per scored test set; "variant" scores all of a variant's test sets
# (every decoder and condition) in one job.
SCORED = "results/scores/{{model}}/{{variant}}/{decoder}/{condition}"


rule score:
    """Score decoded test sets: summary JSON (overall and per corpus subset), per-utterance TSV worst first,
    sclite-compatible ref/hyp trn files, and per-utterance alignments (.pra, worst first)."""
    input:
        hyps=expand("results/hyps/{{model}}/{{variant}}/{decoder}/{condition}.jsonl", decoder=SCORE_DECODERS, condition=SCORE_CONDITIONS),
    output:
        summary=expand(f"{SCORED}.json", decoder=SCORE_DECODERS, condition=SCORE_CONDITIONS),
        utterances=expand(f"{SCORED}.utts.tsv", decoder=SCORE_DECODERS, condition=SCORE_CONDITIONS),
        ref_trn=expand(f"{SCORED}.ref.trn", decoder=SCORE_DECODERS, condition=SCORE_CONDITIONS),
        hyp_trn=expand(f"{SCORED}.hyp.trn", decoder=SCORE_DECODERS, condition=SCORE_CONDITIONS),
        alignments=expand(f"{SCORED}.pra", decoder=SCORE_DECODERS, condition=SCORE_CONDITIONS),
    params:
        test_sets=score_test_sets,
        bootstrap_resamples=config["score"]["bootstrap_resamples"],
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=1000,
    group:
        "evaluation"  # seconds each: a cluster profile's group-components sends several to one allocation
    conda:
        "../envs/report.yaml"
    log:
        f"logs/score/{SCORE_JOB}.log",
    benchmark:
        f"results/benchmarks/score/{SCORE_JOB}.tsv"
    script:
        "../scripts/score.py"
