import functools
import json
import re
import shlex

from iusynth.core.config import ConfigError, run_provenance
from iusynth.methods import TRANSLATORS
from iusynth.cohorts.registry import (
    NIFTYREG,
    SUBJECT_FOLDERS,
    downloaded,
    resolve_cohorts,
)
from iusynth.cohorts.datasets import catalog
from iusynth.cohorts.datasets.upenn import is_archive
from iusynth.core.layout import MANIFEST_NAME, SUBJECT_ID_PATTERN
from iusynth.core.raw_digests import DigestCache, format_digests, subject_digests
from iusynth.evaluation.settings import LPIPS_WEIGHTS_FILE
from iusynth.experiments.segmentation.segmenter import DATA as SEGMENTER_DATA
from iusynth.core.processes import supervise_jobs
from iusynth.core.settings import to_json
from iusynth.core.splits import fold_lists, split_source, trained_folds
from iusynth.core.subject import SubjectRecord
import iusynth.jobs as jobs
from iusynth.reporting import PAPER_RESULTS_FILE

try:
    jobs.validate(config, Path(workflow.basedir) / "schemas" / "config.schema.yaml")
    COHORTS = resolve_cohorts(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None
# The cohorts that download a real dataset (at most one per dataset), or None.
REMIND = downloaded(COHORTS, "remind")
UPENN = downloaded(COHORTS, "upenn")
RESECT = downloaded(COHORTS, "resect")
# Stated in the report's captions (added after validation; no rule reads it).
config["provenance"] = run_provenance(REPOSITORY, workflow.configfiles, COHORTS)

RESULTS = config["results"]


def cluster_resources(gpu):
    """SLURM account, partition (and GPU model) of a job from config 'cluster'; "" left out."""
    cluster = config["cluster"]
    chosen = {
        "slurm_account": cluster["account"],
        "slurm_partition": cluster["gpu_partition" if gpu else "partition"],
    }
    if gpu:
        chosen["gpu_model"] = cluster["gpu_model"]
    return {key: value for key, value in chosen.items() if value}


# Spread into every rule's resources: CPU jobs, and jobs that request a GPU.
CPU_JOB = cluster_resources(gpu=False)
GPU_JOB = cluster_resources(gpu=True)
SRC = REPOSITORY / "src"
# Every rule runs a stage of the package's command line, from this checkout's sources.
IUSYNTH = (
    f"PYTHONPATH={shlex.quote(str(SRC))}${{PYTHONPATH:+:$PYTHONPATH}} python -m iusynth"
)
# Stages watch this Snakemake and stop when it ends, even when it is killed (SIGKILL).
supervise_jobs()
DEMO_COHORTS = [name for name, cohort in COHORTS.items() if cohort.source == "demo"]
# Cohorts whose folders the workflow writes (generated or converted), not local ones.
BUILT_COHORTS = [name for name, cohort in COHORTS.items() if cohort.source != "local"]
PAIRED_COHORTS = [
    config["preprocessing"]["trainval_cohort"],
    config["preprocessing"]["test_cohort"],
]
# Paired cohorts registered by NiftyReg, and those whose registrations are given as ITK
# transform files (cohorts.<name>.transforms; rule import_given_transforms)
NIFTYREG_COHORTS = [n for n in PAIRED_COHORTS if COHORTS[n].transforms == NIFTYREG]
GIVEN_TRANSFORM_COHORTS = [
    n for n in PAIRED_COHORTS if COHORTS[n].transforms != NIFTYREG
]
PAPER_RESULTS = str(PAPER_RESULTS_FILE)
# The folds whose models are trained (all of them with cross-validation), and the one
# whose models the downstream experiments (Tables 3 and 4) use.
FOLDS = trained_folds(config)
PRIMARY_FOLD = config["models"]["fold"]
# Synthesis is evaluated on the test list of each trained fold of the train/validation
# cohort (the folds are a pure function of the cohort's subjects, as in the make_splits
# rule), each by its fold's models, and on the whole test cohort by the primary fold's;
# the test cohort's subjects come first (figures use the first).
EVALUATION = config["evaluation"]
# the networks of each GAN baseline (iusynth.methods), e.g. one per evaluated direction
BASELINE_NETWORKS = {
    name: method.networks(jobs.direction_names(config))
    for name, method in TRANSLATORS.items()
}
EVALUATED_METHODS = list(
    dict.fromkeys(
        [*EVALUATION["table1"], *EVALUATION["table2"], *EVALUATION["sweep_methods"]]
    )
)
FIGURE_METHODS = list(
    dict.fromkeys([*EVALUATION["table1"], EVALUATION["sweep_methods"][0]])
)


def held_out_subjects():
    """fold -> the iUS subjects of the train/validation cohort's test list of that fold."""
    cohort = COHORTS[config["preprocessing"]["trainval_cohort"]]
    splits = config["preprocessing"]["splits"]
    source = split_source(config)
    if source == "seeded" and len(cohort.subjects) < splits["folds"]:
        return {}
    lists = fold_lists(source, list(cohort.subjects), splits["folds"], splits["seed"])
    held_out = {}
    # a subject in the test lists of several folds (the authors' split has two) is scored
    # once, by the first of them
    for fold in FOLDS:
        earlier = {s for subjects in held_out.values() for s in subjects}
        held_out[fold] = [
            s
            for s in lists[fold]["test"]
            if s in cohort.ultrasound_subjects and s not in earlier
        ]
    return held_out


# evaluation set (a cohort) -> fold -> its subjects evaluated by that fold's models
EVALUATION_SETS = {
    name: {fold: subjects for fold, subjects in by_fold.items() if subjects}
    for name, by_fold in (
        (
            config["preprocessing"]["test_cohort"],
            {
                PRIMARY_FOLD: list(
                    COHORTS[config["preprocessing"]["test_cohort"]].ultrasound_subjects
                )
            },
        ),
        (config["preprocessing"]["trainval_cohort"], held_out_subjects()),
    )
    if any(by_fold.values())
}
EVALUATION_SUBJECTS = [
    s
    for by_fold in EVALUATION_SETS.values()
    for subjects in by_fold.values()
    for s in subjects
]
# subject -> the fold whose models synthesise it
FOLD_OF = {
    s: fold
    for by_fold in EVALUATION_SETS.values()
    for fold, subjects in by_fold.items()
    for s in subjects
}
# The evaluated subjects of the primary fold: what the downstream experiments score
PRIMARY_SUBJECTS = [s for s in EVALUATION_SUBJECTS if FOLD_OF[s] == PRIMARY_FOLD]


wildcard_constraints:
    cohort="|".join(COHORTS),
    subject=SUBJECT_ID_PATTERN.pattern.strip("^$"),


def subject_dir(wildcards):
    """The folder of one subject, wherever its cohort lives."""
    return str(COHORTS[wildcards.cohort].root / wildcards.subject)


@functools.cache
def subject_files(cohort, subject):
    """What a job reading one subject depends on: a local cohort's files of the subject
    (listed as the DAG is built, so a replaced file reruns the jobs that read it), or the
    folder a rule of the workflow writes (demo and downloaded cohorts)."""
    folder = COHORTS[cohort].root / subject
    if COHORTS[cohort].source != "local":
        return [str(folder)]
    try:
        return [str(path) for path in SubjectRecord.read(folder, subject).files()]
    except (FileNotFoundError, ValueError) as error:
        raise WorkflowError(f"cohort {cohort}: {error}") from None


def subject_inputs(wildcards):
    """The files (or built folder) of one subject, see subject_files."""
    return subject_files(wildcards.cohort, wildcards.subject)


@functools.cache
def digest_cache(cohort):
    """The cache of a local cohort's file digests (rehashed only when a file moved)."""
    return DigestCache(Path(RESULTS) / "raw_sha256" / f"{cohort}.json")


@functools.cache
def raw_sha256_of(cohort, subject):
    """The SHA-256 of each raw file of a local subject (--raw-sha256): a param of every
    rule reading them, so a file replaced by one with an older timestamp still reruns
    the subject's jobs; empty for folders a rule of the workflow writes."""
    if COHORTS[cohort].source != "local":
        return ""
    files = subject_files(cohort, subject)
    return format_digests(subject_digests(files, digest_cache(cohort)))


def raw_sha256(wildcards):
    """raw_sha256_of the job's cohort and subject."""
    return raw_sha256_of(wildcards.cohort, wildcards.subject)


def given_transform_files(wildcards):
    """The ITK files of a subject's given registration, listed as the DAG is built (a
    replaced file reruns its import); those in a folder the workflow writes (a demo
    subject's) come with that folder, an input already (subject_inputs)."""
    from iusynth.preprocessing.given_transforms import transform_files

    cohort = COHORTS[wildcards.cohort]
    if cohort.transforms == SUBJECT_FOLDERS and cohort.source != "local":
        return []
    folder = cohort.root / wildcards.subject
    return [
        str(path)
        for path in transform_files(cohort.transforms, folder, wildcards.subject)
    ]


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
    if REMIND:
        targets.append(f"{REMIND.root}/plan.tsv")
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
    targets += trained_models()
    targets += rules.synthesis_tables.output
    targets += rules.synthesis_figures.output
    targets += rules.registration_tables.output
    targets += rules.segmentation_tables.output
    return targets


def subject_choice(name):
    """A wildcard constraint matching exactly the subjects of one cohort."""
    return "|".join(re.escape(subject) for subject in COHORTS[name].subjects)


def row(cohort):
    """The config row of a cohort (cohorts.<name>)."""
    return config["cohorts"][cohort.name]


def remind_url():
    """The server root ReMIND's series come from (the config's, else the API's)."""
    return row(REMIND).get("url", catalog.REMIND_APIS[REMIND_API])


def resect_url_arguments():
    """The --url options of resect-download: the config's address, else both known ones."""
    url = row(RESECT).get("url")
    return " ".join(
        f"--url {shlex.quote(u)}" for u in ([url] if url else catalog.RESECT_URLS)
    )


def resect_segmentation_url():
    """Where RESECT-SEG's zip comes from."""
    return row(RESECT).get("segmentation_url", catalog.RESECT_SEG_URL)


def remind_manifest_argument():
    """The --manifest option of remind-plan, or nothing."""
    manifest = row(REMIND).get("manifest")
    return f"--manifest {shlex.quote(str(manifest))}" if manifest else ""


# ReMIND is planned from IDC's index (package idc-index-data) while the DAG is built: the
# exact series of each subject are known offline, before anything is downloaded.
REMIND_API = row(REMIND).get("api", "idc") if REMIND else None
REMIND_TARGETS = row(REMIND).get("targets", "authors") if REMIND else None
REMIND_PLAN = {}
REMIND_INDEX_VERSION = ""
if REMIND:
    from iusynth.cohorts.datasets import remind as remind_dataset

    try:
        REMIND_INDEX_VERSION = remind_dataset.index_version()
        remind_dataset.check_index_against_ledger(REMIND.raw)
        _manifest = row(REMIND).get("manifest")
        REMIND_PLAN = remind_dataset.plan_by_subject(
            remind_dataset.plan_cohort(
                REMIND.subjects,
                config["preprocessing"]["reference_order"],
                manifest=Path(_manifest).expanduser() if _manifest else None,
                targets=REMIND_TARGETS,
            )
        )
    except ValueError as error:  # IndexProblem, a bad manifest
        raise WorkflowError(str(error)) from None


def remind_series_records(wildcards):
    """The download records of one ReMIND subject's planned series."""
    return [
        f"{RESULTS}/downloads/remind/{wildcards.subject}/{entry.series.uid}.json"
        for entry in REMIND_PLAN[wildcards.subject]
    ]


def remind_planned_series(wildcards):
    """One planned series of a ReMIND subject as JSON (what remind-download fetches)."""
    for entry in REMIND_PLAN[wildcards.subject]:
        if entry.series.uid == wildcards.series:
            return json.dumps(entry.row(), sort_keys=True)
    raise WorkflowError(
        f"series {wildcards.series} is not planned for {wildcards.subject}"
    )


def job_settings(builder, *args):
    """A job's settings as JSON: only what it reads of the config (see iusynth.jobs)."""
    return to_json(builder(config, *args))


def upenn_package_root():
    """The UPenn-GBM package folder: the user's, or where its archive is extracted."""
    package = Path(row(UPENN)["package"]).expanduser()
    return str(UPENN.raw / "package") if is_archive(package) else str(package)


def upenn_extraction():
    """The extraction record when the package is an archive, else nothing to wait for."""
    package = Path(row(UPENN)["package"]).expanduser()
    return [f"{RESULTS}/downloads/upenn/extracted.json"] if is_archive(package) else []


def upenn_checksums_argument():
    """The --checksums option of upenn-verify, or nothing (found in the package)."""
    checksums = row(UPENN).get("checksums")
    return f"--checksums {shlex.quote(str(checksums))}" if checksums else ""


def evaluation_set(subject):
    """The cohort an evaluated subject belongs to (the name of its evaluation set)."""
    for name in PAIRED_COHORTS:
        if subject in COHORTS[name].ultrasound_subjects:
            return name
    raise WorkflowError(f"{subject} is in neither paired cohort {PAIRED_COHORTS}")


def evaluation_subject_dir(subject):
    """The raw folder of an evaluated subject, wherever its cohort lives."""
    return str(COHORTS[evaluation_set(subject)].root / subject)


def evaluation_subject_inputs(wildcards):
    """The files (or built folder) of an evaluated subject, see subject_files."""
    return subject_files(evaluation_set(wildcards.subject), wildcards.subject)


def alignment_record_of(subject):
    """The MR -> MR alignment record (align_mr_sequences) of an evaluated subject."""
    cohort = evaluation_set(subject)
    return f"{RESULTS}/registration/{cohort}/{subject}/mr_alignment.json"


def evaluation_subject_choice(subjects=None):
    """A wildcard constraint matching exactly the evaluated subjects (or those given)."""
    chosen = EVALUATION_SUBJECTS if subjects is None else subjects
    return "|".join(re.escape(subject) for subject in chosen) or "^$"


def slice_dir_of(subject):
    """The slice stack of an evaluated subject."""
    return f"{RESULTS}/slices/{evaluation_set(subject)}/{subject}"


def model_dir(fold):
    """The folder of the models of one fold."""
    return f"{RESULTS}/models/fold-{fold}"


def method_models(method, fold=PRIMARY_FOLD):
    """The model.pt files behind an evaluated method: a VAE variant's, or the networks of
    a GAN baseline."""
    if method in BASELINE_NETWORKS:
        return [
            f"{model_dir(fold)}/{method}/{network}/model.pt"
            for network in BASELINE_NETWORKS[method]
        ]
    return [f"{model_dir(fold)}/{method}/model.pt"]


def is_pretrained(method):
    """Whether a method is a variant converted from the authors' weights."""
    return (
        method in config["models"]["variants"]
        and jobs.pretrained(config, method) is not None
    )


def fold_methods(fold):
    """The evaluated methods of one fold: the authors' weights only in the primary fold."""
    return [
        m for m in EVALUATED_METHODS if fold == PRIMARY_FOLD or not is_pretrained(m)
    ]


def evaluated_subjects(method):
    """The subjects a method synthesises (the authors' weights: the primary fold's)."""
    return [s for s in EVALUATION_SUBJECTS if method in fold_methods(FOLD_OF[s])]


def trained_models():
    """Every variant's model.pt: each fold's, the authors' weights in the primary fold."""
    return [
        f"{model_dir(fold)}/{name}/model.pt"
        for fold in FOLDS
        for name in config["models"]["variants"]
        if fold == PRIMARY_FOLD or not is_pretrained(name)
    ]


def variant_settings(name, fold):
    """A variant's train_model settings: training, or the authors' checkpoint to convert."""
    source = jobs.pretrained(config, name)
    if source is None:
        return job_settings(jobs.variant, name, fold)
    return json.dumps({"pretrained": json.loads(to_json(source))})


def lpips_argument(folder=config["evaluation"]["lpips_weights"]):
    """--lpips-weights of a stage (default: the evaluation's), or nothing for no folder."""
    return f"--lpips-weights {shlex.quote(folder)}" if folder else ""


def baseline_training_files(wildcards):
    """The LPIPS weights and user-supplied weights a baseline network trains with."""
    return jobs.baseline_training_files(config, wildcards.baseline, wildcards.network)


def baseline_lpips_argument(wildcards):
    """--lpips-weights of a baseline network's training, or nothing when it needs none."""
    return lpips_argument(
        jobs.baseline_lpips_weights(config, wildcards.baseline, wildcards.network)
    )


# The LPIPS weight file (rule lpips_weights), or none when LPIPS is left out
LPIPS_WEIGHTS = (
    [f"{config['evaluation']['lpips_weights']}/{LPIPS_WEIGHTS_FILE}"]
    if config["evaluation"].get("lpips_weights")
    else []
)


def train_model_inputs(wildcards):
    """Training: the splits and slice stacks; a pretrained variant: its local file, if any."""
    source = jobs.pretrained(config, wildcards.variant)
    if source is None:
        return {"splits": rules.make_splits.output[0], "slices": trainval_slice_dirs()}
    return {"pretrained": source.path} if source.path else {}


def train_model_arguments(wildcards, input):
    """The data arguments of `iusynth train`: slices to train on, or the checkpoint's."""
    if jobs.pretrained(config, wildcards.variant) is None:
        slices = Path(input.slices[0]).parent
        resume = f"{model_dir(wildcards.fold)}/{wildcards.variant}/checkpoint.pt"
        return (
            f"--splits {shlex.quote(input.splits)} --slices {shlex.quote(str(slices))}"
            f" --checkpoint {shlex.quote(resume)}"
        )
    download = shlex.quote(job_settings(jobs.download))
    return f"--cache data/pretrained --download {download}"


def trainval_slice_dirs():
    """The slice stacks of every iUS subject of the train/validation cohort."""
    name = config["preprocessing"]["trainval_cohort"]
    return [f"{RESULTS}/slices/{name}/{s}" for s in COHORTS[name].ultrasound_subjects]


# Downstream segmentation (Table 4)
SEGMENTATION = config["segmentation"]
SYNTHETIC_IUS_METHODS = [m for m in SEGMENTATION["methods"] if m != "supervised"]
SEGMENTER_FOLDS = list(range(jobs.segmenter(config).folds))
# The record of one trained fold (the network keeps its own files beside it)
SEGMENTER_FOLD = f"{RESULTS}/segmentation/{{method}}/segmenter/fold_{{fold}}.json"


def sweep_dirs():
    """The virtual sweep of every subject of the swept cohort."""
    subjects = COHORTS[SEGMENTATION["cohort"]].subjects
    return [f"{RESULTS}/segmentation/sweeps/{subject}" for subject in subjects]


def supervised_stacks():
    """Real iUS slice stacks of the test cohort (RESECT-SEG's role): the supervised nnU-Net
    trains on its expert iUS labels, as the paper's fully supervised row."""
    name = config["preprocessing"]["test_cohort"]
    return [f"{RESULTS}/slices/{name}/{s}" for s in COHORTS[name].ultrasound_subjects]


# Table 4's subjects of the train/validation cohort (the paper's 6 ReMIND cases, which it
# does not name): the first segmentation.trainval_test_subjects of the primary fold's test
# list, in id order, so that no synthesis model whose iUS trains an nnU-Net saw them.
TABLE4_TRAINVAL_SUBJECTS = sorted(
    s
    for s in PRIMARY_SUBJECTS
    if evaluation_set(s) == config["preprocessing"]["trainval_cohort"]
)[: SEGMENTATION["trainval_test_subjects"]]


def segmenter_training_inputs(wildcards):
    """What a method's segmenter trains on: synthetic iUS of the sweeps, or real iUS."""
    if wildcards.method == "supervised":
        return {"real": supervised_stacks()}
    return {
        "synthetic": [
            f"{RESULTS}/segmentation/synthetic_ius/{wildcards.method}/{Path(d).name}"
            for d in sweep_dirs()
        ],
        "sweeps": sweep_dirs(),
    }


def segmenter_sources_arguments(wildcards, input):
    """The segmenter-prepare options naming a method's training planes."""
    if wildcards.method == "supervised":
        return "--real " + " ".join(shlex.quote(path) for path in input.real)
    synthetic = " ".join(shlex.quote(path) for path in input.synthetic)
    sweeps = shlex.quote(str(Path(input.sweeps[0]).parent))
    return f"--synthetic {synthetic} --sweeps {sweeps}"


def segmentation_test_subjects(method):
    """Real iUS subjects a method's nnU-Net is tested on: the test cohort and Table 4's
    subjects of the train/validation cohort (supervised: those alone, since it trains on
    the test cohort)."""
    test_cohort = list(
        COHORTS[config["preprocessing"]["test_cohort"]].ultrasound_subjects
    )
    if method == "supervised":
        return TABLE4_TRAINVAL_SUBJECTS
    return [*test_cohort, *TABLE4_TRAINVAL_SUBJECTS]


# Every subject some nnU-Net of Table 4 is tested on
SEGMENTATION_TEST_SUBJECTS = list(
    dict.fromkeys(
        s
        for method in SEGMENTATION["methods"]
        for s in segmentation_test_subjects(method)
    )
)


def check_pretrained_scoring():
    """The authors' weights score no real ReMIND case they were trained on, unless allowed
    (models.variants.<name>.pretrained.score_training_subjects)."""
    from iusynth.cohorts.datasets.authors import check_fair_scoring

    for name in config["models"]["variants"]:
        source = jobs.pretrained(config, name)
        if source is None:
            continue
        scored = set(evaluated_subjects(name)) if name in EVALUATED_METHODS else set()
        if name == config["registration_experiment"]["model"]:
            scored |= set(PRIMARY_SUBJECTS)
        if name in SEGMENTATION["methods"]:
            scored |= set(SEGMENTATION_TEST_SUBJECTS)
        key = f"models.variants.{name}.pretrained"
        try:
            check_fair_scoring(
                sorted(scored), source.fold, source.score_training_subjects, key
            )
        except ValueError as error:
            raise WorkflowError(str(error)) from None


check_pretrained_scoring()
