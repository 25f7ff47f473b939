from asrcompress import logs
from asrcompress.gallery import make_gallery

logs.to_file(snakemake.log[0])
inputs, p = snakemake.input, snakemake.params
make_gallery(
    f"{inputs.condition}/manifest.jsonl",
    f"{inputs.test}/manifest.jsonl",
    snakemake.output[0],
    sample_rate=p.sample_rate,
    n_examples=p.n_examples,
    seed=p.seed,
)
