from asrcompress import logs
from asrcompress.scoring import ScoreJob, score_test_sets

logs.to_file(snakemake.log[0])
score_test_sets(
    [ScoreJob.from_json(entry) for entry in snakemake.params.test_sets],
    n_resamples=snakemake.params.bootstrap_resamples,
    seed=snakemake.params.seed,
)
