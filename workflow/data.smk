# Stage 1: the corpus and the noise / room-impulse-response banks.

if config["corpus"]["kind"] == "demo":

    rule demo_corpus:
        """Synthesise one split of the offline demo corpus with eSpeak NG."""
        output:
            directory("results/data/{split}"),
        params:
            spec=demo_split_params,
        conda:
            "../envs/data.yaml"
        log:
            "logs/data/demo_corpus/{split}.log",
        benchmark:
            "results/benchmarks/data/demo_corpus/{split}.tsv"
        script:
            "../scripts/demo_corpus.py"

else:

    rule prepare_split:
        """Manifest of one split from downloaded LibriSpeech-layout subsets (the audio stays in resources/)."""
        input:
            split_inputs,
        output:
            directory("results/data/{split}"),
        params:
            spec=split_params,
        conda:
            "../envs/data.yaml"
        log:
            "logs/data/prepare_split/{split}.log",
        benchmark:
            "results/benchmarks/data/prepare_split/{split}.tsv"
        script:
            "../scripts/prepare_split.py"


rule corpus_bank:
    """A noise or RIR bank from a downloaded corpus (MUSAN, UrbanSound8K, DEMAND, OpenSLR-28)."""
    input:
        corpus_bank_input,
    output:
        directory("results/banks/{bank_kind}/{bank}"),
    params:
        spec=corpus_bank_params,
    conda:
        "../envs/data.yaml"
    log:
        "logs/data/corpus_bank/{bank_kind}/{bank}.log",
    benchmark:
        "results/benchmarks/data/corpus_bank/{bank_kind}/{bank}.tsv"
    script:
        "../scripts/corpus_bank.py"


rule noise_bank:
    """Generate a demo noise bank: coloured noise, or babble from held-out synthetic talkers."""
    output:
        directory("results/banks/noise/{noise}"),
    params:
        spec=noise_bank_params,
    conda:
        "../envs/data.yaml"
    log:
        "logs/data/noise_bank/{noise}.log",
    benchmark:
        "results/benchmarks/data/noise_bank/{noise}.tsv"
    script:
        "../scripts/noise_bank.py"


rule rir_bank:
    """Simulate room impulse responses at one target RT60 (pyroomacoustics image method)."""
    output:
        directory("results/banks/rir/{rt60}"),
    params:
        n_rooms=config["banks"]["rir"]["n_rooms"],
        sample_rate=config["sample_rate"],
        seed=config["seed"],
    conda:
        "../envs/data.yaml"
    log:
        "logs/data/rir_bank/{rt60}.log",
    benchmark:
        "results/benchmarks/data/rir_bank/{rt60}.tsv"
    script:
        "../scripts/rir_bank.py"
