from asrcompress import logs
from asrcompress.catalog import load_catalog
from asrcompress.download import download

logs.to_file(snakemake.log[0])
wildcards = snakemake.wildcards
archive = load_catalog(snakemake.params.catalog).archive_by_filename(wildcards.dataset, wildcards.filename)
download(archive.remote(), archive.download_path)
