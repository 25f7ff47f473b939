from asrcompress import logs
from asrcompress.scoring import score_hypotheses

logs.to_file(snakemake.log[0])
score_hypotheses(
    snakemake.input.hyps,
    snakemake.output.summary,
    snakemake.output.utterances,
    n_resamples=snakemake.params.bootstrap_resamples,
    seed=snakemake.params.seed,
)
