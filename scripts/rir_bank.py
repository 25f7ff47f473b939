from asrcompress import logs
from asrcompress.banks import RirBankSpec, build_rir_bank

logs.to_file(snakemake.log[0])
p = snakemake.params
spec = RirBankSpec(rt60_s=float(snakemake.wildcards.rt60), n_rooms=p.n_rooms, sample_rate=p.sample_rate, seed=p.seed)
build_rir_bank(spec, snakemake.output[0])
