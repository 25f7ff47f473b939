# Stage 7: the tidy table, the figures and the report's captions.


localrules:
    aggregate,
    plot,
    gallery,


rule aggregate:
    """Join scores, timings, variant cards and condition summaries into one tidy table."""
    input:
        unpack(aggregate_inputs),
    output:
        report(
            TABLE,
            caption="report/wer_table.rst",
            category="Tables",
        ),
    params:
        cells=cells(),
    conda:
        "../envs/asrcompress.yaml"
    log:
        f"logs/{REPORT_LOGS}/aggregate.log",
    benchmark:
        f"benchmarks/{REPORT_LOGS}/aggregate.tsv"
    script:
        "../scripts/aggregate.py"


rule plot:
    """One seaborn figure from the table."""
    input:
        table=TABLE,
    output:
        report(
            f"{FIGURE_DIR}/{{figure}}.png",
            caption="report/figure.rst",
            category="Figures",
        ),
    conda:
        "../envs/asrcompress.yaml"
    log:
        f"logs/{REPORT_LOGS}/plot_{{figure}}.log",
    benchmark:
        f"benchmarks/{REPORT_LOGS}/plot_{{figure}}.tsv"
    script:
        "../scripts/plot.py"


rule gallery:
    """A few test utterances per condition: clean vs corrupted spectrograms, and the audio."""
    input:
        condition="results/conditions/{condition}",
        test="results/data/test",
    output:
        report(
            directory("results/gallery/{condition}"),
            patterns=[r"{name,[^/]+\.(?:png|wav)}"],
            caption="report/gallery.rst",
            category="Test-set gallery",
            subcategory="{condition}",
        ),
    params:
        sample_rate=config["sample_rate"],
        n_examples=config["report"]["gallery_examples"],
        seed=config["seed"],
    conda:
        "../envs/asrcompress.yaml"
    log:
        "logs/report/gallery/{condition}.log",
    benchmark:
        "benchmarks/report/gallery/{condition}.tsv"
    script:
        "../scripts/gallery.py"
