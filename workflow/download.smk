# Stage 0: everything fetched from the network lands under resources/, verified, once.
# Downstream rules read these through ancient(): a re-download or a touched folder
# never reruns data preparation, training or decoding by mtime alone.

# Cluster compute nodes often have no internet: fetch on the submit host.
localrules:
    download,
    fetch_model,



# The marker is the only declared output: Snakemake deletes a job's outputs before running it, so an
# archive copied in by hand (an offline machine) must not be one; download() verifies it in place.
rule download:
    """Fetch one catalog archive (resumable, retried, checksum-verified, renamed into place)."""
    output:
        "resources/downloads/{dataset}/{filename}.verified.json",
    params:
        checksums=archive_checksums,
        catalog=config["catalog"],
    retries: 1
    resources:
        downloads=1,
    conda:
        "../envs/data.yaml"
    log:
        "logs/download/{dataset}/{filename}.log",
    benchmark:
        "results/benchmarks/download/{dataset}/{filename}.tsv"
    script:
        "../scripts/download.py"


rule extract:
    """Unpack a verified archive (path-traversal entries refused; all or nothing)."""
    input:
        extracted_archive,
    output:
        directory("resources/corpora/{dataset}/{archive}"),
    conda:
        "../envs/data.yaml"
    log:
        "logs/extract/{dataset}/{archive}.log",
    benchmark:
        "results/benchmarks/extract/{dataset}/{archive}.tsv"
    script:
        "../scripts/extract.py"


rule fetch_model:
    """Download a Hugging Face checkpoint once into resources/models/{model}."""
    output:
        directory("resources/models/{model}"),
    params:
        hub=hub_model_params,
    retries: 1
    conda:
        "../envs/data.yaml"
    log:
        "logs/download/models/{model}.log",
    benchmark:
        "results/benchmarks/download/models/{model}.tsv"
    script:
        "../scripts/fetch_model.py"
