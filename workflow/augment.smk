# Stage 2: the mismatched test sets, one folder per condition.


rule augment:
    """Corrupt the test set for one condition (deterministic per utterance and condition)."""
    input:
        unpack(condition_inputs),
    output:
        directory("results/conditions/{condition}"),
    params:
        sample_rate=config["sample_rate"],
        seed=config["seed"],
        on_bad_audio=config["on_bad_audio"],
        protocol=random_protocol,
        snr_reference=config["conditions"]["snr_reference"],
    resources:
        mem_mb=4000,
    conda:
        "../envs/data.yaml"
    log:
        "logs/augment/{condition}.log",
    benchmark:
        "results/benchmarks/augment/{condition}.tsv"
    script:
        "../scripts/augment.py"
