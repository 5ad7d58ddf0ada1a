# reprise: every table and figure of the Mazumder-lab efficient-ML papers as a named target.
#   snakemake --cores 2 all                                   # smoke scale (default config)
#   snakemake --cores 2 baselines_quant                       # one table
#   snakemake -n --configfile config/scales/full.yaml all     # plan the full grid
#   snakemake --workflow-profile workflow/profiles/slurm all  # on a SLURM cluster
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "config/schema.yaml")


include: "workflow/rules/common.smk"


rule all:
    input:
        all_targets(),
    default_target: True


include: "workflow/rules/data.smk"
include: "workflow/rules/calibrate.smk"
include: "workflow/rules/compress.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/report.smk"
