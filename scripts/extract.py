from asrcompress import logs
from asrcompress.download import extract_archive

logs.to_file(snakemake.log[0])
extract_archive(snakemake.input[0].removesuffix(".verified.json"), snakemake.output[0])
