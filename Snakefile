"""MRI <-> intra-operative ultrasound synthesis with multi-modal hierarchical VAEs, end to end.

With no data and no internet, `snakemake --cores all` runs every stage on a generated demo
cohort. Real datasets are switched on in the config (see README).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))


configfile: Path(workflow.basedir) / "config" / "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/qc.smk"
include: "workflow/rules/preprocessing.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/synthesis.smk"
include: "workflow/rules/registration_experiment.smk"
include: "workflow/rules/segmentation.smk"
include: "workflow/rules/benchmarks.smk"
include: "workflow/rules/reports_common.smk"
include: "workflow/rules/reports.smk"


rule all:
    default_target: True
    input:
        final_targets(),
        rules.summarise_benchmarks.output,
        rules.report_index.output,
