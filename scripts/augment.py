from asrcompress import logs
from asrcompress.conditions import Condition, build_condition

logs.to_file(snakemake.log[0])
inputs, p = snakemake.input, snakemake.params
build_condition(
    Condition.parse(snakemake.wildcards.condition),
    test_manifest=f"{inputs.test}/manifest.jsonl",
    out_dir=snakemake.output[0],
    sample_rate=p.sample_rate,
    seed=p.seed,
    noise_bank_manifest=f"{inputs.noise_bank}/manifest.jsonl" if "noise_bank" in inputs.keys() else None,
    rir_bank_manifest=f"{inputs.rir_bank}/manifest.jsonl" if "rir_bank" in inputs.keys() else None,
    on_bad_audio=p.on_bad_audio,
)
