from asrcompress import logs
from asrcompress.tables import ResultFiles, aggregate

logs.to_file(snakemake.log[0])
i = snakemake.input
cells = [
    ResultFiles(model, variant, condition, score, timing, f"{variant_dir}/card.json", f"{condition_dir}/summary.json")
    for (model, variant, condition), score, timing, variant_dir, condition_dir in zip(
        snakemake.params.cells, i.scores, i.timings, i.variants, i.conditions
    )
]
aggregate(cells, snakemake.output[0])
