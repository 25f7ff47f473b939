from asrcompress import logs
from asrcompress.results_tables import write_results_md
from asrcompress.environment import describe_environment

logs.to_file(snakemake.log[0])
write_results_md(snakemake.input.table, snakemake.output[0], title=snakemake.params.title,
                 config_name=snakemake.params.config_name, environment=describe_environment())
