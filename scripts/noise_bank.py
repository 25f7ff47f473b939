from asrcompress import logs
from asrcompress.banks import NoiseBankSpec, build_noise_bank, talkers_from_voices

logs.to_file(snakemake.log[0])
spec = dict(snakemake.params.spec)
talkers = talkers_from_voices(spec.pop("babble_voices", []), spec.pop("babble_talkers", 0))
build_noise_bank(NoiseBankSpec(noise_type=snakemake.wildcards.noise, babble_talkers=talkers, **spec), snakemake.output[0])
