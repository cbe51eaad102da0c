"""Reports: subject pages, the index, the methods text and the provenance (issue 20).

``check_reports`` checks the reports of a finished run; the end-to-end micro run of
``test_workflow.py`` calls it. The tests here build pages and texts from small inputs.
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import fnmatch
import hashlib
import importlib.resources
import io
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import html5lib
import jinja2
import jinja2.meta
import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import yaml

from iusynth import jobs
from iusynth.core import layout
from iusynth.core.config import validate_config
from iusynth.core.settings import ConfigError, from_json, to_json
from iusynth.core.subject import SubjectRecord
from iusynth.reporting import provenance as prov
from iusynth.reporting.index_page import parse_markdown_tables
from iusynth.reporting.methods import write_methods
from iusynth.reporting.run_warnings import collect_warnings, scan_log
from iusynth.reporting.settings import MethodsSettings, PageSettings
from iusynth.reporting.subject_page.files import SubjectFiles
from iusynth.reporting.subject_page.page import write_subject_page
from iusynth.reporting.subject_page.registration import rigid_summary

from .conftest import DEFAULTS, REPO, merged_config

SECTIONS = ("inputs", "registration", "synthesis", "downstream", "warnings")
MAX_PAGE_BYTES = 5_000_000


# --- checking a page ------------------------------------------------------------------------


def parse_page(path: Path):
    """Parse an HTML page strictly (html5lib raises on any HTML5 parse error)."""
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    return parser.parse(Path(path).read_text(encoding="utf-8"))


def element_ids(document) -> set[str]:
    """The ids of a parsed page's elements."""
    return {element.get("id") for element in document.iter() if element.get("id")}


def check_page(path: Path) -> set[str]:
    """A page opens offline: every image inlined and decodable, every link resolves.

    Returns the ids of the page's sections.
    """
    path = Path(path)
    assert path.stat().st_size < MAX_PAGE_BYTES, f"{path} is {path.stat().st_size} bytes"
    document = parse_page(path)
    ids = element_ids(document)
    for image in document.iter("img"):
        source = image.get("src")
        assert source.startswith("data:image/png;base64,"), (path, source[:60])
        png = base64.b64decode(source.split(",", 1)[1], validate=True)
        pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 50, (path, pixels.shape)
        assert image.get("alt"), f"{path}: an image without alt text"
    for element in document.iter():
        for attribute in ("src", "href"):
            value = element.get(attribute) or ""
            assert not re.match(r"^(https?|file|ftp):", value), (path, value)
    for anchor in document.iter("a"):
        href = anchor.get("href")
        assert href, f"{path}: a link without a target"
        target, _, fragment = href.partition("#")
        if not target:
            assert fragment in ids, (path, href)
            continue
        resolved = (path.parent / target).resolve()
        assert resolved.is_file(), f"{path}: link {href} does not resolve ({resolved})"
        if fragment:
            assert fragment in element_ids(parse_page(resolved)), (path, href)
    return {section for section in SECTIONS if section in ids}


def test_strict_parsing_catches_broken_html(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><head><title>x</title></head><body><p><b>x</p>")
    with pytest.raises(html5lib.html5parser.ParseError):
        parse_page(page)


# --- small pieces ---------------------------------------------------------------------------


def test_rigid_summary_reports_rotation_and_centre_displacement():
    from iusynth.core.geometry import rigid_transform, rotation_matrix

    centre = np.array([10.0, -20.0, 30.0])
    rotation = rotation_matrix(np.array([0.0, 0.0, 1.0]), np.deg2rad(4.0))
    matrix = rigid_transform(rotation, np.array([1.0, 2.0, -2.0]), centre)
    summary = rigid_summary(matrix, centre)
    assert summary["rotation_deg"] == pytest.approx(4.0)
    assert summary["axis"] == [0.0, 0.0, 1.0]
    assert summary["displacement_mm"] == [1.0, 2.0, -2.0]
    assert summary["displacement_norm_mm"] == pytest.approx(3.0)


def test_compact_png_keeps_the_picture(tmp_path):
    import matplotlib.pyplot as plt

    from iusynth.reporting.render import compact_png

    rng = np.random.default_rng(0)
    figure, axis = plt.subplots(figsize=(4, 4))
    axis.imshow(rng.normal(size=(64, 64)), cmap="gray")
    axis.contour(np.hypot(*np.mgrid[-32:32, -32:32]) < 20, levels=[0.5], colors="red")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    original, compact = buffer.getvalue(), compact_png(buffer.getvalue())
    assert len(compact) < 0.8 * len(original)
    before = matplotlib.image.imread(io.BytesIO(original), format="png")[..., :3]
    after = matplotlib.image.imread(io.BytesIO(compact), format="png")[..., :3]
    error = np.abs(after - before).max(axis=-1) * 255
    grey = (before[..., 0] == before[..., 1]) & (before[..., 1] == before[..., 2])
    assert error[grey].max() < 1.01 and np.percentile(error[~grey], 95) < 20


def test_log_warnings_are_collected_once_with_their_count(tmp_path):
    log = tmp_path / "job.log"
    log.write_text(
        "2026-01-01 10:00:00,001 iusynth INFO converted Case1\n"
        "2026-01-01 10:00:00,002 iusynth WARNING Case1: no landmark file; converted without\n"
        "2026-01-01 10:00:00,003 iusynth WARNING Case1: no landmark file; converted without\n"
        "/x/site-packages/nibabel/loadsave.py:12: UserWarning: qform and sform differ\n"
        "  warnings.warn(\n"
        "2026-01-01 10:00:01,000 iusynth ERROR something failed\n"
    )
    found = collect_warnings({"convert_resect_subject": [log]})
    assert [(w.level, w.count) for w in found] == [("WARNING", 2), ("UserWarning", 1), ("ERROR", 1)]
    assert found[0].message == "Case1: no landmark file; converted without"
    assert found[0].rule == "convert_resect_subject" and found[0].log == str(log)
    with pytest.raises(FileNotFoundError, match=r"missing.log"):
        scan_log(tmp_path / "missing.log")


def test_markdown_tables_are_parsed_and_a_broken_one_is_named(tmp_path):
    text = "# Table 9: x\n\nA note.\n\n## set: a\n\n| Method | Dice |\n|---|---|\n| A | 1.0 |\n"
    blocks = parse_markdown_tables(text, tmp_path / "t.md")
    assert [b.kind for b in blocks] == ["heading", "paragraph", "heading", "table"]
    assert blocks[3].header == ("Method", "Dice") and blocks[3].rows == (("A", "1.0"),)
    with pytest.raises(ValueError, match=r"broken.md"):
        parse_markdown_tables("| Method | Dice |\n| A | 1 |\n", tmp_path / "broken.md")


def test_reports_config_mistakes_name_their_key():
    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    for override, key in (
        ({"reports": {"figure_dpi": 5}}, "reports.figure_dpi"),
        ({"reports": {"weak_registration_mm": 0}}, "reports.weak_registration_mm"),
        ({"reports": {"colour": "red"}}, "reports.colour"),
    ):
        with pytest.raises(ConfigError, match=re.escape(key)):
            validate_config(merged_config(override), schema)


def templates_the_code_loads() -> set[str]:
    """The templates the reporting code renders, and those they extend or import."""
    names = set()
    reporting = REPO / "src" / "iusynth" / "reporting"
    for path in reporting.rglob("*.py"):
        if path == reporting / "render.py":  # render_template passes its caller's name on
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            called = getattr(node.func, "attr", getattr(node.func, "id", None))
            if called in ("render_template", "get_template"):
                assert isinstance(node.args[0], ast.Constant), f"{path}: a computed template name"
                names.add(node.args[0].value)
    shipped = importlib.resources.files("iusynth.reporting") / "templates"
    environment = jinja2.Environment()
    pending = list(names)
    while pending:
        source = (shipped / pending.pop()).read_text(encoding="utf-8")
        for name in jinja2.meta.find_referenced_templates(environment.parse(source)):
            if name not in names:
                names.add(name)
                pending.append(name)
    return names


def test_templates_ship_as_package_data():
    loaded = templates_the_code_loads()
    assert {"subject.html.j2", "index.html.j2", "methods.j2", "base.html.j2"} <= loaded
    shipped = importlib.resources.files("iusynth.reporting") / "templates"
    assert {entry.name for entry in shipped.iterdir() if entry.name.endswith(".j2")} == loaded
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["iusynth"]
    for name in loaded:
        assert any(fnmatch.fnmatch(f"reporting/templates/{name}", p) for p in patterns), name


# --- provenance -----------------------------------------------------------------------------


def write_benchmark_summary(path: Path) -> Path:
    """A summary.tsv as summarise_benchmarks writes it."""
    path.write_text(
        "rule\tjobs\ttotal_s\tmean_s\tmax_s\tpeak_rss_mb\n"
        "train_model\t2\t120.5\t60.25\t70.0\t900.1\n"
        "synthesise\t4\t20.0\t5.0\t6.0\t\n"
    )
    return path


def make_provenance(tmp_path: Path, cohorts: dict | None = None) -> Path:
    """A provenance file of this checkout with a config file, a model and a ledger."""
    config_file = tmp_path / "run.yaml"
    config_file.write_text("reports: {figure_dpi: 90}\n")
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights" * 100)
    if cohorts is None:
        root = tmp_path / "cohort"
        root.mkdir(exist_ok=True)
        layout.write_manifest(root / layout.MANIFEST_NAME, [])
        raw = tmp_path / "raw"
        raw.mkdir(exist_ok=True)
        (raw / "ledger.jsonl").write_text('{"file": "a"}\n{"file": "b"}\n')
        cohorts = [prov.CohortData("resect", "dataset", root, ("Case1",), raw)]
    record = prov.build_provenance(
        repository=REPO,
        config={"results": "results", "reports": {"figure_dpi": 90}},
        config_files=[config_file],
        cohorts=cohorts,
        models=[model],
        benchmark_summary=write_benchmark_summary(tmp_path / "summary.tsv"),
        environment_files=[REPO / "workflow" / "envs" / "reports.yaml"],
        snakemake_version="9.0.0",
    )
    output = tmp_path / "provenance.json"
    prov.write_provenance(output, record)
    return output


def test_provenance_records_code_config_data_models_machine_and_times(tmp_path):
    path = make_provenance(tmp_path)
    record = json.loads(path.read_text())
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert record["code"]["commit"] == commit and isinstance(record["code"]["dirty"], bool)
    config_file = record["config"]["files"][0]
    assert (
        config_file["sha256"] == hashlib.sha256(Path(config_file["path"]).read_bytes()).hexdigest()
    )
    assert record["config"]["effective"]["reports"] == {"figure_dpi": 90}
    assert record["packages"]["snakemake"] == "9.0.0"
    assert record["packages"]["numpy"] == np.__version__
    assert record["tools"]["reg_aladin"]  # NiftyReg is installed with the package
    ledger = record["data"]["resect"]["ledger"]
    assert ledger["entries"] == 2
    assert (
        ledger["sha256"] == hashlib.sha256((tmp_path / "raw/ledger.jsonl").read_bytes()).hexdigest()
    )
    assert record["models"][0]["sha256"] == hashlib.sha256(b"weights" * 100).hexdigest()
    assert record["machine"]["logical_cpus"] >= 1 and isinstance(record["machine"]["gpus"], list)
    assert record["wall_times"]["total_job_s"] == pytest.approx(140.5)
    assert record["wall_times"]["rules"][1]["peak_rss_mb"] is None
    stamp = prov.read_stamp(path)
    assert stamp.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_code_state_names_the_uncommitted_changes(tmp_path):
    def git(*arguments: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *arguments], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "tracked.txt").write_text("one\n")
    git("add", "tracked.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    clean = prov.code_state(tmp_path)
    assert clean["dirty"] is False and clean["modified_files"] == []
    (tmp_path / "tracked.txt").write_text("two\n")
    (tmp_path / "new.txt").write_text("untracked\n")
    dirty = prov.code_state(tmp_path)
    assert dirty["dirty"] is True and dirty["describe"].endswith("-dirty")
    assert dirty["modified_files"] == ["tracked.txt"] and dirty["untracked_files"] == 1
    assert prov.code_state(tmp_path / "absent")["commit"] is None


def test_provenance_errors_name_the_file(tmp_path):
    bad = tmp_path / "provenance.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match=r"provenance.json.*write_provenance"):
        prov.read_stamp(bad)
    with pytest.raises(FileNotFoundError, match=r"model.pt"):
        prov.file_record(tmp_path / "model.pt")
    summary = tmp_path / "summary.tsv"
    summary.write_text("rule\tjobs\nx\t1\n")
    with pytest.raises(ValueError, match=r"summary.tsv.*summarise_benchmarks"):
        prov.wall_times(summary)


# --- a page from a generated subject --------------------------------------------------------


def page_settings(cohort: str, **overrides) -> PageSettings:
    """The settings the workflow passes a page of the micro config (iusynth.jobs)."""
    config = merged_config(yaml.safe_load((REPO / "config" / "micro.yaml").read_text()))
    return dataclasses.replace(jobs.subject_page(config, cohort), **overrides)


def test_report_settings_travel_as_json():
    for cohort in ("remind", "upenn", "resect"):
        settings = page_settings(cohort)
        assert from_json(PageSettings, to_json(settings)) == settings
    assert settings.figure_methods[-1] == settings.sweep_method == "mmhvae"
    methods = jobs.methods(DEFAULTS)
    assert "threads" not in to_json(methods)  # runtime, two levels down: dropped and given
    assert from_json(MethodsSettings, to_json(methods), threads=1) == methods
    assert methods.architecture.image_size == DEFAULTS["preprocessing"]["slice_size"][0]


@pytest.fixture(scope="module")
def remind_page_inputs(generated, tmp_path_factory):
    """A generated ReMIND-role subject with its manifest, QC figure, logs and provenance."""
    from iusynth.preprocessing.qc import plot_subject

    subject, folder = generated["remind"]
    name = subject.plan.subject
    root = tmp_path_factory.mktemp("page")
    manifest = root / layout.MANIFEST_NAME
    record = SubjectRecord.read(folder, name)
    layout.write_manifest(manifest, [record.entry])
    qc = root / "qc.png"
    plot_subject(record, qc)
    log = root / "generate.log"
    log.write_text("2026-01-01 10:00:00,002 iusynth WARNING simulated: a test warning\n")
    provenance = make_provenance(root)
    files = {
        "subject_dir": str(folder),
        "manifest": str(manifest),
        "input_qc": str(qc),
        "provenance": str(provenance),
        "logs": {"generate_demo_subject": [str(log)]},
    }
    return name, folder, files, root


def test_page_of_a_subject_shows_its_inputs_and_warnings(remind_page_inputs):
    name, folder, files, root = remind_page_inputs
    # the reports folder layout: reports/<cohort>/<subject>.html, provenance in results/
    page = root / "reports" / "remind" / f"{name}.html"
    summary_path = page.with_suffix(".json")
    (root / "reports" / "index.html").parent.mkdir(parents=True, exist_ok=True)
    (root / "reports" / "index.html").write_text("<!DOCTYPE html><title>index</title>")
    summary = write_subject_page(
        SubjectFiles.from_json(json.dumps(files)),
        page_settings("remind"),
        name,
        page,
        summary_path,
    )
    assert check_page(page) == {"inputs", "warnings"}
    document = parse_page(page)
    text = " ".join(document.itertext())
    assert "simulated: a test warning" in text and "generate_demo_subject" in text
    entry = SubjectRecord.read(folder, name).entry
    missing = [m for m in layout.MR_SEQUENCES if not entry.has(m)]
    assert summary["missing"] == missing and summary["modalities"] == [
        m for m in layout.MODALITIES if entry.has(m)
    ]
    assert summary["warnings"] == 1 and summary["checks"] == len(missing)
    for sequence in missing:
        assert f"{sequence} is missing" in text
    assert "simulated demo data" in text
    footer = document.find(".//footer")
    assert hashlib.sha256(Path(files["provenance"]).read_bytes()).hexdigest()[:12] in " ".join(
        footer.itertext()
    )
    assert json.loads(summary_path.read_text()) == summary


def test_bad_page_inputs_stop_with_the_file_and_the_fix(remind_page_inputs, tmp_path):
    name, _, files, _ = remind_page_inputs
    settings = page_settings("remind")
    missing_figure = {**files, "input_qc": str(tmp_path / "absent.png")}
    with pytest.raises(FileNotFoundError, match=r"absent.png.*re-run"):
        write_subject_page(
            SubjectFiles.from_json(json.dumps(missing_figure)),
            settings,
            name,
            tmp_path / "p.html",
            tmp_path / "p.json",
        )
    not_png = tmp_path / "qc.png"
    not_png.write_text("not an image")
    with pytest.raises(ValueError, match=r"qc.png is not a PNG"):
        write_subject_page(
            SubjectFiles.from_json(json.dumps({**files, "input_qc": str(not_png)})),
            settings,
            name,
            tmp_path / "p.html",
            tmp_path / "p.json",
        )
    empty_manifest = tmp_path / "subjects.tsv"
    layout.write_manifest(empty_manifest, [])
    with pytest.raises(ValueError, match=r"subjects.tsv does not list"):
        write_subject_page(
            SubjectFiles.from_json(json.dumps({**files, "manifest": str(empty_manifest)})),
            settings,
            name,
            tmp_path / "p.html",
            tmp_path / "p.json",
        )
    tiny = page_settings("remind", reports=dataclasses.replace(settings.reports, max_page_mb=0.01))
    with pytest.raises(ValueError, match=r"above reports.max_page_mb"):
        write_subject_page(
            SubjectFiles.from_json(json.dumps(files)), tiny, name, tmp_path / "p.html",
            tmp_path / "p.json",
        )  # fmt: skip
    assert not (tmp_path / "p.html").exists()


# --- methods text ---------------------------------------------------------------------------


def dry_run_command(rule_stage: str, configfiles: list[Path], workdir: Path) -> list[str]:
    """The command line a dry run prints for the (first) job of a stage."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-n", "-p",
         "--configfile", *map(str, configfiles), "-d", str(workdir)],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    for line in output.splitlines():
        if f"python -m iusynth {rule_stage} " in line:
            return shlex.split(line.split(" python -m iusynth ", 1)[1].split(" > ")[0])
    raise AssertionError(f"no {rule_stage} job in the dry run")


def run_methods(arguments: list[str], provenance: Path, output: Path) -> dict[str, str]:
    """Run write_methods with the dry run's settings and cohorts; return the three texts."""
    values = dict(zip(arguments[1::2], arguments[2::2], strict=False))
    paths = [output / "methods.md", output / "methods.tex", output / "citations.bib"]
    settings = from_json(MethodsSettings, values["--settings"], threads=1)
    write_methods(settings, json.loads(values["--cohorts"]), provenance, paths)
    return {path.suffix: path.read_text() for path in paths}


def check_citations(texts: dict[str, str]) -> set[str]:
    """Every \\cite of the LaTeX text has its BibTeX entry; returns the keys."""
    keys = set(re.findall(r"^@\w+\{([^,]+),", texts[".bib"], re.M))
    cited = {
        key for group in re.findall(r"\\cite\{([^}]+)\}", texts[".tex"]) for key in group.split(",")
    }
    assert cited == keys, cited ^ keys
    numbered = re.findall(r"^\d+\. ", texts[".md"], re.M)
    assert len(numbered) == len(keys)
    return keys


def test_methods_of_the_real_datasets_name_them_with_dois_and_licences(tmp_path):
    from .test_datasets import make_upenn_package

    package = make_upenn_package(tmp_path, ["UPENN-GBM-00001_11", "UPENN-GBM-00002_11"], set())
    overlay = tmp_path / "package.yaml"
    overlay.write_text(
        f"cohorts:\n  upenn:\n    package: '{package}'\nsegmentation:\n  nnunet:\n    folds: 2\n"
    )
    configs = [REPO / "config" / name for name in ("remind.yaml", "resect.yaml", "upenn.yaml")]
    arguments = dry_run_command("report-methods", [*configs, overlay], tmp_path / "run")
    texts = run_methods(arguments, make_provenance(tmp_path, cohorts=[]), tmp_path)
    markdown = texts[".md"]
    for fact in (
        "ReMIND", "10.7937/3RAG-D070", "RESECT", "10.11582/2017.00004", "RESECT-SEG",
        "CC BY-NC-SA 4.0", "UPenn-GBM", "10.7937/TCIA.709X-DN49", "CC BY 4.0",
        "103 subjects of ReMIND", "23 subjects of RESECT", "2 subjects of UPenn-GBM",
        "non-commercial",
    ):  # fmt: skip
        assert fact in markdown, fact
    assert "simulated" not in markdown.lower()
    keys = check_citations(texts)
    assert {"juvekar2023remind_data", "xiao2017resect_data", "behboodi2022resectseg",
            "bakas2021upenn_data", "clark2013tcia", "fedorov2023idc"} <= keys  # fmt: skip
    assert {"dorent2023mhvae", "dorent2024mmhvae", "modat2014niftyreg", "isensee2021nnunet",
            "zhang2018lpips"} <= keys  # fmt: skip
    check_latex_escaping(texts[".tex"])


def test_methods_of_the_demo_say_the_cohort_is_simulated(tmp_path):
    arguments = dry_run_command(
        "report-methods", [REPO / "config" / "micro.yaml"], tmp_path / "run"
    )
    texts = run_methods(arguments, make_provenance(tmp_path, cohorts=[]), tmp_path)
    markdown = texts[".md"]
    assert "All images of this run are simulated" in markdown
    assert "no patient data" in markdown
    assert "10.7937/3RAG-D070" not in markdown and "CC BY-NC" not in markdown
    versions = json.loads((tmp_path / "provenance.json").read_text())["packages"]
    for package in ("torch", "nnunetv2", "snakemake"):
        assert versions[package] in markdown, package
    assert "fonov2011mni" in check_citations(texts)
    check_latex_escaping(texts[".tex"])
    # each baseline in its own words for this run's settings (micro: all of them)
    assert "the ViT from random weights (not ResViT's ImageNet-21k ones)" in markdown
    assert "with a perceptual term on AlexNet features, not VGG-19's" in markdown


def check_latex_escaping(latex: str) -> None:
    """No bare LaTeX special character outside comments and citation keys."""
    body = "\n".join(line for line in latex.splitlines() if not line.startswith("%"))
    bare = re.findall(r".{0,30}(?<!\\)[_%&#].{0,30}", re.sub(r"\\cite\{[^}]*\}", "", body))
    assert not bare, bare


# --- the reports of a finished run (called by the end-to-end micro test) ------------------


def expected_sections(results: Path, cohort: str, subject: str, config: dict) -> set[str]:
    """Which sections a subject's page must have, from the run's own outputs."""
    sections = {"inputs", "warnings"}
    if (results / "slices" / cohort / subject).is_dir():
        sections.add("registration")
    if list((results / "metrics" / "synthesis").glob(f"*/{subject}.csv")):
        sections.add("synthesis")
    tested = list((results / "metrics" / "segmentation").glob(f"*/{subject}.csv"))
    experiment = results / "metrics" / "registration" / f"{subject}.csv"
    takes_part = experiment.is_file() and len(pd.read_csv(experiment)) > 0
    if tested or takes_part or cohort == config["segmentation"]["cohort"]:
        sections.add("downstream")
    return sections


def check_reports(workdir: Path, config: dict) -> None:
    """Every subject has a page with the sections it should; the index, methods and
    provenance exist and link up."""
    results = workdir / config["results"]
    reports = results / "reports"
    index = reports / "index.html"
    assert check_page(index) == set()
    index_document = parse_page(index)
    links = {a.get("href") for a in index_document.iter("a")}
    rows = index_document.findall(".//table[@id='subject-table']/tbody/tr")
    subjects = []
    for cohort in ("remind", "upenn", "resect"):
        for entry in layout.read_manifest(results / "cohorts" / cohort / layout.MANIFEST_NAME):
            subjects.append((cohort, entry.subject))
    assert len(rows) == len(subjects)
    for cohort, subject in subjects:
        page = reports / cohort / f"{subject}.html"
        assert f"{cohort}/{subject}.html" in links
        assert check_page(page) == expected_sections(results, cohort, subject, config), page
        summary = json.loads(page.with_suffix(".json").read_text())
        assert summary["subject"] == subject and summary["page_mb"] < 5
    text = " ".join(index_document.itertext())
    for title in ("Table 1", "Table 2", "Table 3", "Table 4"):
        assert title in text, title
    assert "Simulated data" in text
    methods = (reports / "methods.md").read_text()
    assert "simulated" in methods and (reports / "methods.tex").is_file()
    assert "@inproceedings{dorent2023mhvae," in (reports / "citations.bib").read_text()
    record = json.loads((results / "provenance.json").read_text())
    assert {"code", "config", "packages", "data", "models", "machine", "wall_times"} <= set(record)
    assert any(m["path"].endswith("mmhvae/model.pt") for m in record["models"])
    assert all(len(m["sha256"]) == 64 for m in record["models"])
    assert {"train_model", "synthesise"} <= {r["rule"] for r in record["wall_times"]["rules"]}
