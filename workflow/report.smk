# Stage 7: the tidy table, study tables, RESULTS.md, figures, and the report's captions.
# Everything here reads the tidy table only, so restyling a figure or a table reruns nothing upstream.


localrules:
    aggregate,
    plot,
    study_tables,
    results_md,
    config_snapshot,
    gallery,


rule aggregate:
    """Join scores, timings, variant cards and condition summaries into one tidy table, with each cell's
    paired bootstrap comparison against the baseline on the same utterances."""
    input:
        unpack(aggregate_inputs),
    output:
        report(
            TABLE,
            caption="report/wer_table.rst",
            category=REPORT_CATEGORY,
            subcategory="Tables",
        ),
    params:
        cells=cells(),
        baseline=GRID.baseline_variant,
        bootstrap_resamples=config["score"]["bootstrap_resamples"],
        seed=config["seed"],
    conda:
        "../envs/report.yaml"
    log:
        f"logs/{REPORT_LOGS}/aggregate.log",
    benchmark:
        f"results/benchmarks/{REPORT_LOGS}/aggregate.tsv"
    script:
        "../scripts/aggregate.py"


rule study_tables:
    """A wide table in one paper's layout (markdown and CSV)."""
    input:
        table=TABLE,
    output:
        markdown=report(
            f"{TABLE_DIR}/{{layout}}.md",
            caption="report/study_table.rst",
            category=REPORT_CATEGORY,
            subcategory="Tables",
        ),
        csv=f"{TABLE_DIR}/{{layout}}.csv",
    wildcard_constraints:
        layout="|".join(TABLE_LAYOUTS),
    conda:
        "../envs/report.yaml"
    log:
        f"logs/{REPORT_LOGS}/table_{{layout}}.log",
    benchmark:
        f"results/benchmarks/{REPORT_LOGS}/table_{{layout}}.tsv"
    script:
        "../scripts/study_tables.py"


rule results_md:
    """RESULTS.md in ESPnet's style: environment, then per model and decoder WER/CER tables and cost."""
    input:
        table=TABLE,
    output:
        report(RESULTS_MD, caption="report/results_md.rst", category=REPORT_CATEGORY, subcategory="Tables"),
    params:
        title=REPORT_CATEGORY,
        config_name=REPORT_NAME or "config/config.yaml",
    conda:
        "../envs/report.yaml"
    log:
        f"logs/{REPORT_LOGS}/results_md.log",
    benchmark:
        f"results/benchmarks/{REPORT_LOGS}/results_md.tsv"
    script:
        "../scripts/results_md.py"


rule config_snapshot:
    """The resolved config (schema defaults filled in) that produced these results."""
    output:
        report(
            f"{TABLE_DIR}/config.yaml",
            caption="report/config.rst",
            category=REPORT_CATEGORY,
            subcategory="Config",
        ),
    params:
        config=config,
    conda:
        "../envs/report.yaml"
    log:
        f"logs/{REPORT_LOGS}/config_snapshot.log",
    benchmark:
        f"results/benchmarks/{REPORT_LOGS}/config_snapshot.tsv"
    script:
        "../scripts/config_snapshot.py"


rule plot:
    """One seaborn figure from the table, as PNG (report) and PDF (papers)."""
    input:
        table=TABLE,
    output:
        png=report(
            f"{FIGURE_DIR}/{{figure}}.png",
            caption="report/figure.rst",
            category=REPORT_CATEGORY,
            subcategory="Figures",
        ),
        pdf=f"{FIGURE_DIR}/{{figure}}.pdf",
    params:
        style=config["report"]["style"],
    conda:
        "../envs/report.yaml"
    log:
        f"logs/{REPORT_LOGS}/plot_{{figure}}.log",
    benchmark:
        f"results/benchmarks/{REPORT_LOGS}/plot_{{figure}}.tsv"
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
        "../envs/report.yaml"
    log:
        "logs/report/gallery/{condition}.log",
    benchmark:
        "results/benchmarks/report/gallery/{condition}.tsv"
    script:
        "../scripts/gallery.py"
