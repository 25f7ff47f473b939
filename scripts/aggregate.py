from asrcompress import logs
from asrcompress.tables import ResultFiles, aggregate

logs.to_file(snakemake.log[0])
i = snakemake.input
exports = i.exports if "exports" in i.keys() else [None] * len(i.scores)
cells = [
    ResultFiles(model, variant, decoder, condition, score, utterances, timing, f"{variant_dir}/card.json",
                f"{condition_dir}/summary.json", f"{export_dir}/export.json" if export_dir else None)
    for (model, variant, decoder, condition), score, utterances, timing, variant_dir, condition_dir, export_dir in zip(
        snakemake.params.cells, i.scores, i.utterances, i.timings, i.variants, i.conditions, exports
    )
]
aggregate(cells, snakemake.output[0], baseline=snakemake.params.baseline,
          n_resamples=snakemake.params.bootstrap_resamples, seed=snakemake.params.seed)
