# Two generic rules cover every stage of every study, so a recipe can add a stage
# without touching the workflow. Each runs the same command as dvc.yaml; --keep-going makes a
# failed node's failure its output, so the study's report is still built (pipeline.failures).

STUDIES = list(PLAN.studies)


wildcard_constraints:
    study="|".join(STUDIES) or "no-study",
    stage="[^/]+",
    slug="[^/]+",


# `snakemake --cores 2 ska_lm` builds one study.
for _study in STUDIES:

    rule:
        name:
            _study
        input:
            all_targets(_study),


rule stage:
    input:
        node_inputs(),
    output:
        f"{ART}/{{study}}/{{stage}}/{{slug}}/meta.json",
    log:
        f"{ART}/.logs/{{study}}/{{stage}}/{{slug}}.log",
    threads: node_threads()
    resources:
        gpu=node_gpus(),
    priority: node_priority
    shell:
        "python -m stages {wildcards.study} {wildcards.stage} {wildcards.slug} --keep-going > {log} 2>&1"


rule report:
    input:
        node_inputs("report"),
    output:
        f"{ART}/reports/{{study}}/meta.json",
    log:
        f"{ART}/.logs/{{study}}/report.log",
    threads: node_threads("report")
    resources:
        gpu=node_gpus("report"),
    priority: REPORT_PRIORITY
    shell:
        "python -m stages {wildcards.study} report base --keep-going > {log} 2>&1"
