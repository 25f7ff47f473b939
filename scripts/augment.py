from asrcompress import logs
from asrcompress.conditions import Condition, RandomProtocol, build_condition

logs.to_file(snakemake.log[0])
inputs, p = snakemake.input, snakemake.params
condition = Condition.parse(snakemake.wildcards.condition)
build_condition(
    condition,
    test_manifest=f"{inputs.test}/manifest.jsonl",
    out_dir=snakemake.output[0],
    sample_rate=p.sample_rate,
    seed=p.seed,
    noise_bank_manifests=[f"{bank}/manifest.jsonl" for bank in inputs.noise_banks] if "noise_banks" in inputs.keys() else [],
    rir_bank_manifest=f"{inputs.rir_bank}/manifest.jsonl" if "rir_bank" in inputs.keys() else None,
    on_bad_audio=p.on_bad_audio,
    protocol=RandomProtocol.from_config(condition.protocol, p.protocol) if condition.kind == "random" else None,
    snr_reference=p.snr_reference,
)
