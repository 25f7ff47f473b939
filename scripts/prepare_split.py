from asrcompress import logs
from asrcompress.corpora.prepare import prepare_speech_split

logs.to_file(snakemake.log[0])
spec = snakemake.params.spec
prepare_speech_split(spec["roots_by_subset"], snakemake.output[0], max_utterances=spec["max_utterances"], seed=spec["seed"],
                     partial_transcripts=spec["partial_transcripts"])
