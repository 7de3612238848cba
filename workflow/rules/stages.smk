# One rule per study and stage, generated from the plan, so a recipe can add a stage without
# touching the workflow and every job is named <study>_<stage> (`snakemake -n` and the log say
# which study a job belongs to). Each runs the same command as dvc.yaml; --keep-going makes a
# failed node's failure its output, so the study's report is still built (pipeline.failures).

STUDIES = list(PLAN.studies)


wildcard_constraints:
    slug="[^/]+",


# `snakemake --cores 2 ska_lm` builds one study.
for _study in STUDIES:

    rule:
        name:
            _study
        input:
            all_targets(_study),


for _study, _stage, _gather in sorted({(n.study, n.stage, n.spec.gather) for n in PLAN.nodes.values()}):

    rule:
        name:
            f"{_study}_{_stage}"
        input:
            node_inputs(_study, _stage),
        output:
            f"{ART}/reports/{_study}/meta.json" if _gather else f"{ART}/{_study}/{_stage}/{{slug}}/meta.json",
        log:
            f"{ART}/.logs/{_study}/{_stage}.log" if _gather else f"{ART}/.logs/{_study}/{_stage}/{{slug}}.log",
        message:  # a report job: one line, not every cell's meta.json listed (twice, with the reason)
            f"{_study}: {_stage} of {len(PLAN.studies[_study].cells)} cells" if _gather else None
        params:  # the shell line is formatted when the job runs, after this loop: so the names go here
            study=_study,
            stage=_stage,
            slug=lambda wildcards: getattr(wildcards, "slug", _plan.BASE),
        threads: node_threads(_study, _stage)
        resources:
            gpu=node_gpus(_study, _stage),
        priority: REPORT_PRIORITY if _gather else STUDY_RANK[_study]
        shell:
            "python -m stages {params.study} {params.stage} {params.slug} --keep-going > {log} 2>&1"


# `snakemake --report report.html`: each study's report tables (CSV) and plots (PNG), one category per study.
for _study in REPORTED:

    rule:
        name:
            f"{_study}_views"
        input:
            f"{ART}/reports/{_study}/meta.json",
        output:
            report(directory(views_dir(_study)), patterns=REPORT_PATTERNS, category=_study, labels={"file": "{name}"}),
        message:
            f"{_study}: linking the report's tables and plots for `snakemake --report`"
        params:
            src=f"{ART}/reports/{_study}",
        localrule: True
        shell:
            "mkdir -p {output} && for f in {params.src}/*.csv {params.src}/*.png; do"
            ' if [ -e "$f" ]; then ln "$f" {output}/ 2>/dev/null || cp "$f" {output}/; fi; done'
