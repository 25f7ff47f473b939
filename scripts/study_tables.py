import os

from asrcompress import logs
from asrcompress.results_tables import write_study_tables

logs.to_file(snakemake.log[0])
write_study_tables(snakemake.input.table, os.path.dirname(snakemake.output.markdown), [snakemake.wildcards.layout])
