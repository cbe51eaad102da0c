# What the report rules (reports.smk) read: the files of each subject's page and the
# provenance's inputs (their settings come from iusynth.jobs).

from snakemake import __version__ as SNAKEMAKE_VERSION

REPORTS = f"{RESULTS}/reports"
PROVENANCE = f"{RESULTS}/provenance.json"
# Every config file of the run (the default one and each --configfile), and the rule
# families' conda envs: their digests go into the provenance.
RUN_CONFIG_FILES = [str(path) for path in dict.fromkeys(workflow.configfiles)]
ENV_FILES = sorted(
    str(path) for path in (Path(workflow.basedir) / "envs").glob("*.yaml")
)
# What the config holds, less what the workflow adds about itself: the provenance records it.
EFFECTIVE_CONFIG = json.dumps(
    {key: value for key, value in config.items() if key != "provenance"}
)
# The Snakemake report's description links to the index (an absolute file address).
config["provenance"]["reports_index"] = (
    (Path(REPORTS) / "index.html").resolve().as_uri()
)


def provenance_cohorts():
    """Source, folder, subjects and download folder of every cohort, as JSON."""
    return json.dumps(
        {
            name: {
                "source": cohort.source,
                "dataset": cohort.dataset,
                "root": str(cohort.root),
                "subjects": list(cohort.subjects),
                "raw": str(cohort.raw) if cohort.raw else None,
            }
            for name, cohort in COHORTS.items()
        },
        sort_keys=True,
    )


def provenance_models():
    """Every model file of the run: variants, baselines, segmenter folds, LPIPS weights."""
    files = trained_models()
    for method in EVALUATED_METHODS:
        for fold in [PRIMARY_FOLD] if is_pretrained(method) else FOLDS:
            files += method_models(method, fold)
    for method in SYNTHETIC_IUS_METHODS:
        files += method_models(method)
    # a fold's record holds its weights' path and SHA-256
    files += [
        SEGMENTER_FOLD.format(method=method, fold=fold)
        for method in SEGMENTATION["methods"]
        for fold in SEGMENTER_FOLDS
    ]
    return list(dict.fromkeys([*files, *LPIPS_WEIGHTS]))


def job_log(rule_name, **wildcards):
    """The log file of one job of a rule."""
    return getattr(rules, rule_name).log[0].format(**wildcards)


def subject_job_logs(cohort, subject):
    """rule -> the logs of the jobs that made or used one subject's data."""
    source = COHORTS[cohort].source
    logs = {}
    if source == "demo":
        logs["generate_demo_subject"] = [
            job_log("generate_demo_subject", cohort=cohort, subject=subject)
        ]
    elif source == "dataset" and cohort == "remind":
        logs["download_remind_series"] = [
            job_log("download_remind_series", subject=subject, series=entry.series.uid)
            for entry in REMIND_PLAN[subject]
        ]
        logs["convert_remind_subject"] = [
            job_log("convert_remind_subject", subject=subject)
        ]
    elif source == "dataset" and cohort == "resect":
        logs["download_resect_subject"] = [
            job_log("download_resect_subject", subject=subject)
        ]
        logs["convert_resect_subject"] = [
            job_log("convert_resect_subject", subject=subject)
        ]
    elif source == "dataset" and cohort == "upenn":
        logs["convert_upenn_subject"] = [
            job_log("convert_upenn_subject", subject=subject)
        ]
    logs["plot_subject_qc"] = [
        job_log("plot_subject_qc", cohort=cohort, subject=subject)
    ]
    if is_paired_subject(cohort, subject):
        registration = (
            ("align_mr_sequences", "register_us_to_mr")
            if cohort in NIFTYREG_COHORTS
            else ("import_given_transforms",)
        )
        for name in (
            *registration,
            "resample_and_normalise",
            "export_slices",
            "plot_registration_qc",
        ):
            logs[name] = [job_log(name, cohort=cohort, subject=subject)]
    if is_evaluated_subject(cohort, subject):
        fold = FOLD_OF[subject]
        for name in ("synthesise", "evaluate_synthesis"):
            logs[name] = [
                job_log(f"{name}_{cohort}_fold{fold}", method=method)
                for method in fold_methods(fold)
            ]
        if subject in PRIMARY_SUBJECTS:
            for name in ("synthesise_mr_from_us", "registration_experiment"):
                logs[name] = [job_log(name, subject=subject)]
        logs["segment_real_ius"] = [
            job_log("segment_real_ius", method=method, subject=subject)
            for method in tested_methods(subject)
        ]
    if cohort == SEGMENTATION["cohort"]:
        logs["virtual_sweep"] = [job_log("virtual_sweep", subject=subject)]
        logs["synthetic_ius"] = [
            job_log("synthetic_ius", method=method, subject=subject)
            for method in SYNTHETIC_IUS_METHODS
        ]
    return logs


def is_paired_subject(cohort, subject):
    """Whether a subject goes through registration and preprocessing (iUS + MR)."""
    return cohort in PAIRED_COHORTS and subject in COHORTS[cohort].ultrasound_subjects


def is_evaluated_subject(cohort, subject):
    """Whether a subject's synthesis, segmentation and registration are evaluated."""
    return (
        is_paired_subject(cohort, subject)
        and subject in EVALUATION_SUBJECTS
        and evaluation_set(subject) == cohort
    )


def tested_methods(subject):
    """The Table 4 methods whose nnU-Net segments this subject's real iUS."""
    return [
        method
        for method in SEGMENTATION["methods"]
        if subject in segmentation_test_subjects(method)
    ]


def subject_report_files(wildcards):
    """Every file the page of one subject reads, by role (see iusynth.reporting)."""
    cohort, subject = wildcards.cohort, wildcards.subject
    if subject not in COHORTS[cohort].subjects:
        raise WorkflowError(f"{subject} is not a subject of the {cohort} cohort")
    files = {
        "subject_dir": subject_dir(wildcards),
        "manifest": cohort_manifest(cohort),
        "input_qc": f"{RESULTS}/qc/cohorts/{cohort}/{subject}.png",
        "provenance": PROVENANCE,
        "logs": subject_job_logs(cohort, subject),
    }
    if is_paired_subject(cohort, subject):
        files["splits"] = rules.make_splits.output[0]
        files["registration"] = {
            "record": f"{RESULTS}/registration/{cohort}/{subject}/us_to_mr.json",
            "alignment": f"{RESULTS}/registration/{cohort}/{subject}/mr_alignment.json",
            "preprocessed": f"{RESULTS}/preprocessed/{cohort}/{subject}",
            "qc": f"{RESULTS}/qc/registration/{cohort}/{subject}.png",
        }
    if is_evaluated_subject(cohort, subject):
        methods = fold_methods(FOLD_OF[subject])
        files["synthesis_slices"] = slice_dir_of(subject)
        files["synthesis"] = {
            method: f"{RESULTS}/synthesis/{method}/{subject}"
            for method in FIGURE_METHODS
            if method in methods
        }
        files["synthesis_metrics"] = {
            method: f"{RESULTS}/metrics/synthesis/{method}/{subject}.csv"
            for method in methods
        }
        if subject in PRIMARY_SUBJECTS:
            files["registration_experiment"] = (
                f"{RESULTS}/metrics/registration/{subject}.csv"
            )
        files["segmentation"] = {
            method: {
                "mask": f"{RESULTS}/segmentation/{method}/predictions/{subject}.nii.gz",
                "metrics": f"{RESULTS}/metrics/segmentation/{method}/{subject}.csv",
            }
            for method in tested_methods(subject)
        }
    if cohort == SEGMENTATION["cohort"]:
        files["sweep"] = f"{RESULTS}/segmentation/sweeps/{subject}"
        files["synthetic_ius"] = {
            method: f"{RESULTS}/segmentation/synthetic_ius/{method}/{subject}"
            for method in SYNTHETIC_IUS_METHODS
        }
    return files


def flat_paths(value):
    """Every path of a nested mapping or list of paths."""
    if isinstance(value, dict):
        return [path for item in value.values() for path in flat_paths(item)]
    if isinstance(value, list):
        return [path for item in value for path in flat_paths(item)]
    return [value]


def subject_report_inputs(wildcards):
    """The page's inputs: exactly the files it reads, by role (the subject's own files
    rather than its folder, see subject_files)."""
    inputs = {
        role: flat_paths(value)
        for role, value in subject_report_files(wildcards).items()
    }
    inputs["subject_dir"] = subject_inputs(wildcards)
    return inputs


def subject_pages(kind):
    """The page (html) or summary (json) of every subject of every cohort."""
    return [
        f"{REPORTS}/{name}/{subject}.{kind}"
        for name, cohort in COHORTS.items()
        for subject in cohort.subjects
    ]


RESULT_TABLES = [
    *rules.synthesis_tables.output.table1,
    *rules.synthesis_tables.output.table2,
    *rules.registration_tables.output.table,
    *rules.segmentation_tables.output.table,
]
