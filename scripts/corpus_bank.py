from asrcompress import logs
from asrcompress.corpora.prepare import prepare_corpus_bank

logs.to_file(snakemake.log[0])
spec = snakemake.params.spec
prepare_corpus_bank(spec["layout"], spec["subset"], spec["roots"], snakemake.output[0], spec["options"], spec["seed"],
                    name=snakemake.wildcards.bank, kind=spec["kind"], license=spec["license"],
                    sample_rate=spec["sample_rate"])
