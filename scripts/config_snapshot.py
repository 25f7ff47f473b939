from asrcompress import logs
from asrcompress.io import write_yaml

logs.to_file(snakemake.log[0])
write_yaml(snakemake.output[0], snakemake.params.config)
