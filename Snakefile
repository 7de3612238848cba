# Builds every node of every study in params.yaml. Run: snakemake --cores 2
# One study: snakemake --cores 2 ska_lm   (see README.md for more)
from snakemake.utils import min_version

min_version("9.0")


include: "workflow/rules/common.smk"
include: "workflow/rules/stages.smk"


rule all:
    input:
        all_targets(),
