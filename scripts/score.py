from asrcompress import logs
from asrcompress.scoring import score_hypotheses

logs.to_file(snakemake.log[0])
out = snakemake.output
score_hypotheses(
    snakemake.input.hyps,
    out.summary,
    out.utterances,
    n_resamples=snakemake.params.bootstrap_resamples,
    seed=snakemake.params.seed,
    ref_trn=out.ref_trn,
    hyp_trn=out.hyp_trn,
    alignments=out.alignments,
)
