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
    if _gather:  # the study's report: its directory, each table and plot shown by `snakemake --report`

        rule:
            name:
                f"{_study}_{_stage}"
            input:
                node_inputs(_study, _stage),
            output:
                report(
                    directory(f"{ART}/reports/{_study}"),
                    patterns=REPORT_PATTERNS,
                    category=_study,
                    labels={"file": "{name}"},
                ),
            log:
                f"{ART}/.logs/{_study}/{_stage}.log",
            message:  # instead of the input list (every cell's meta.json), printed twice otherwise
                f"{_study}: {_stage} of {len(PLAN.studies[_study].cells)} cells -> {ART}/reports/{_study}"
            threads: node_threads(_study, _stage)
            resources:
                gpu=node_gpus(_study, _stage),
            params:  # the shell line is formatted when the job runs, after the loop: so the names go here
                study=_study,
                stage=_stage,
            priority: REPORT_PRIORITY
            shell:
                "python -m stages {params.study} {params.stage} base --keep-going > {log} 2>&1"

    else:

        rule:
            name:
                f"{_study}_{_stage}"
            input:
                node_inputs(_study, _stage),
            output:
                f"{ART}/{_study}/{_stage}/{{slug}}/meta.json",
            log:
                f"{ART}/.logs/{_study}/{_stage}/{{slug}}.log",
            threads: node_threads(_study, _stage)
            resources:
                gpu=node_gpus(_study, _stage),
            params:
                study=_study,
                stage=_stage,
            priority: STUDY_RANK[_study]
            shell:
                "python -m stages {params.study} {params.stage} {wildcards.slug} --keep-going > {log} 2>&1"
