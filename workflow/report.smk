# Stage 7: the tidy table, the figures and the report's captions.


localrules:
    aggregate,
    plot,


rule aggregate:
    """Join scores, timings, variant cards and condition summaries into one tidy table."""
    input:
        unpack(aggregate_inputs),
    output:
        report(
            "results/tables/wer.csv",
            caption="report/wer_table.rst",
            category="Tables",
        ),
    params:
        cells=cells(),
    conda:
        "../envs/asrcompress.yaml"
    log:
        "logs/report/aggregate.log",
    benchmark:
        "benchmarks/report/aggregate.tsv"
    script:
        "../scripts/aggregate.py"


rule plot:
    """One seaborn figure from the table."""
    input:
        table="results/tables/wer.csv",
    output:
        report(
            "results/figures/{figure}.png",
            caption="report/figure.rst",
            category="Figures",
        ),
    conda:
        "../envs/asrcompress.yaml"
    log:
        "logs/report/plot_{figure}.log",
    benchmark:
        "benchmarks/report/plot_{figure}.tsv"
    script:
        "../scripts/plot.py"
