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
PAIRED_COHORTS = [
    config["preprocessing"]["trainval_cohort"],
    config["preprocessing"]["test_cohort"],
]


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


def cohort_manifest(name):
    """The subjects.tsv of one cohort."""
    return str(COHORTS[name].root / MANIFEST_NAME)


def registration_records(wildcards):
    """The iUS -> MR registration records of every iUS subject of a cohort."""
    return [
        f"{RESULTS}/registration/{wildcards.cohort}/{subject}/us_to_mr.json"
        for subject in COHORTS[wildcards.cohort].ultrasound_subjects
    ]


def final_targets():
    """Everything the workflow produces (but the benchmark summary, which comes last)."""
    targets = [cohort_manifest(name) for name in COHORTS]
    targets += [
        f"{RESULTS}/qc/cohorts/{cohort.name}/{subject}.png"
        for cohort in COHORTS.values()
        for subject in cohort.subjects
    ]
    for name in PAIRED_COHORTS:
        subjects = COHORTS[name].ultrasound_subjects
        targets += [f"{RESULTS}/slices/{name}/{subject}" for subject in subjects]
        targets += [
            f"{RESULTS}/qc/registration/{name}/{subject}.png" for subject in subjects
        ]
        targets.append(f"{RESULTS}/registration/{name}_landmark_errors.csv")
    targets.append(f"{RESULTS}/splits/splits.json")
    return targets
