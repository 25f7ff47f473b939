from asrcompress import logs
from asrcompress.plots import make_figure

logs.to_file(snakemake.log[0])
make_figure(snakemake.wildcards.figure, snakemake.input.table, snakemake.output.png, snakemake.output.pdf,
            style=snakemake.params.style)
