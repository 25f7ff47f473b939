from asrcompress import logs
from asrcompress.models import fetch_pretrained

logs.to_file(snakemake.log[0])
hub = snakemake.params.hub
fetch_pretrained(hub["pretrained_id"], snakemake.output[0], revision=hub["revision"])
