import json

from iusynth.config import ConfigError, resolve_cohorts, validate_config
from iusynth.layout import MANIFEST_NAME, SUBJECT_ID_PATTERN

try:
    validate_config(
        config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
    )
    COHORTS = resolve_cohorts(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None

RESULTS = config["results"]
SRC = Path(workflow.basedir) / "src"
# Every rule runs a stage of the package's command line, from this checkout's sources.
IUSYNTH = f'PYTHONPATH="{SRC}${{PYTHONPATH:+:$PYTHONPATH}}" python -m iusynth'
DEMO_COHORTS = [name for name, cohort in COHORTS.items() if cohort.source == "demo"]


wildcard_constraints:
    cohort="|".join(COHORTS),
    subject=SUBJECT_ID_PATTERN.pattern.strip("^$"),


def subject_dir(wildcards):
    """The folder of one subject, wherever its cohort lives."""
    return str(COHORTS[wildcards.cohort].root / wildcards.subject)


def cohort_subject_dirs(wildcards):
    """The folders of every subject of a cohort."""
    cohort = COHORTS[wildcards.cohort]
    return [str(cohort.root / subject) for subject in cohort.subjects]


def cohort_manifests():
    """The subjects.tsv of every cohort."""
    return [str(cohort.root / MANIFEST_NAME) for cohort in COHORTS.values()]


def subject_qc_figures():
    """The QC figure of every subject of every cohort."""
    return [
        f"{RESULTS}/qc/cohorts/{cohort.name}/{subject}.png"
        for cohort in COHORTS.values()
        for subject in cohort.subjects
    ]
