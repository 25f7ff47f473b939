from asrcompress import logs
from asrcompress.download import RemoteFile, download

logs.to_file(snakemake.log[0])
remote = dict(snakemake.params.remote)
download(RemoteFile(**{**remote, "mirrors": tuple(remote["mirrors"])}), snakemake.output.archive)
