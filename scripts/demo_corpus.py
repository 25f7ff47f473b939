from asrcompress import logs
from asrcompress.corpora.demo import DemoSplitSpec, build_split

logs.to_file(snakemake.log[0])
spec = dict(snakemake.params.spec)
spec["words_per_sentence"] = tuple(spec["words_per_sentence"])
out = snakemake.output[0]
build_split(DemoSplitSpec(split=snakemake.wildcards.split, **spec), out)
