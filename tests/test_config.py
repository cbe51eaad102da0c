"""Configuration validation: every mistake is reported with the key it concerns."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from iusynth.cohorts.registry import resolve_cohorts
from iusynth.core.config import ConfigError
from iusynth.core.layout import SubjectEntry, subject_file, write_manifest
from iusynth.jobs import validate

from .conftest import REPO, merged_config

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def local_cohort(root: Path, entries: list[SubjectEntry]) -> None:
    """A local cohort: its manifest and (empty) files for what each row lists."""
    write_manifest(root / "subjects.tsv", entries)
    for entry in entries:
        (root / entry.subject).mkdir()
        for kind in entry.available:
            subject_file(root / entry.subject, entry.subject, kind).touch()


def test_shipped_configs_are_valid(micro_config):
    validate(merged_config(), SCHEMA)
    validate(micro_config, SCHEMA)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"demo": {"sede": 1}}, "unknown config key 'demo.sede'"),
        ({"demo": {"cohorts": {"remind": {"subjects": "six"}}}}, "'demo.cohorts.remind.subjects'"),
        ({"demo": {"ultrasound": {"spacing_mm": -1}}}, "'demo.ultrasound.spacing_mm'"),
        ({"cohorts": {"upenn": {"source": "internet"}}}, "'cohorts.upenn.source'"),
        ({"cohorts": {"resect": {"source": "local"}}}, "missing config key 'cohorts.resect.path'"),
        (
            {"cohorts": {"remind": {"source": "dataset", "raw": "d", "api": "s3"}}},
            "'cohorts.remind.api'",
        ),
        (
            {"demo": {"misalignment": {"translation_mm": [8.0, 3.0]}}},
            "'demo.misalignment.translation_mm'",
        ),
    ],
)
def test_bad_values_name_their_key(override, key):
    with pytest.raises(ConfigError) as error:
        validate(merged_config(override), SCHEMA)
    assert key in str(error.value)


def test_local_cohort_must_exist(tmp_path):
    config = merged_config(
        {"cohorts": {"resect": {"source": "local", "path": str(tmp_path / "nope")}}}
    )
    validate(config, SCHEMA)
    with pytest.raises(ConfigError, match=r"cohorts\.resect\.path.*does not exist"):
        resolve_cohorts(config)
    (tmp_path / "empty").mkdir()
    config["cohorts"]["resect"]["path"] = str(tmp_path / "empty")
    with pytest.raises(ConfigError, match=r"cohorts\.resect\.path.*subjects.tsv not found"):
        resolve_cohorts(config)


def test_local_cohort_lists_its_manifest(tmp_path):
    entries = [SubjectEntry(f"Case{i}", frozenset({"US", "FLAIR"})) for i in (1, 2)]
    local_cohort(tmp_path, entries)
    config = merged_config({"cohorts": {"resect": {"source": "local", "path": str(tmp_path)}}})
    cohorts = resolve_cohorts(config)
    assert cohorts["resect"].subjects == ("Case1", "Case2")
    assert cohorts["resect"].root == tmp_path
    assert cohorts["remind"].root == Path("results") / "cohorts" / "remind"


def test_a_further_cohort_is_one_row(tmp_path):
    """A private paired cohort trains the model; a second ReMIND-like demo cohort tests it."""
    entries = [SubjectEntry(f"P{i}", frozenset({"US", "T2", "tumor-US"})) for i in range(1, 6)]
    local_cohort(tmp_path, entries)
    config = merged_config(
        {
            "cohorts": {
                "hospital": {"source": "local", "path": str(tmp_path)},
                "site_b": {"dataset": "remind", "source": "demo"},
            },
            "demo": {
                "cohorts": {
                    "site_b": {
                        "subjects": 3,
                        "low_grade_fraction": 0,
                        "missing_sequence_fraction": 0,
                    }
                }
            },
            "preprocessing": {"trainval_cohort": "hospital", "test_cohort": "site_b"},
        }
    )
    validate(config, SCHEMA)
    cohorts = resolve_cohorts(config)
    assert cohorts["hospital"].ultrasound_subjects == ("P1", "P2", "P3", "P4", "P5")
    assert cohorts["hospital"].dataset is None
    assert cohorts["site_b"].subjects == ("site_b-demo001", "site_b-demo002", "site_b-demo003")
    assert cohorts["site_b"].root == Path("results") / "cohorts" / "site_b"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"cohorts": {"site_b": {"dataset": "remind", "source": "demo"}}},
            "missing config key 'demo.cohorts.site_b'",
        ),
        (
            {"cohorts": {"site_b": {"source": "demo"}}},
            "missing config key 'cohorts.site_b.dataset'",
        ),
        (
            {"cohorts": {"remind": {"source": "dataset", "raw": "a"}, "more": {
                "dataset": "remind", "source": "dataset", "raw": "b"}}},
            "2 cohorts download remind; keep one row",
        ),
        ({"preprocessing": {"trainval_cohort": "hospital"}}, "'hospital' is not a cohort"),
        ({"segmentation": {"cohort": "brats"}}, "'segmentation.cohort': 'brats' is not a cohort"),
        (
            {"demo": {"cohorts": {"upenn": {"missing_sequence_fraction": 0.5}}}},
            "'demo.cohorts.upenn.missing_sequence_fraction'",
        ),
    ],
)  # fmt: skip
def test_cohort_table_mistakes_name_their_key(override, message):
    config = merged_config(override)
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(config, SCHEMA)
        resolve_cohorts(config)


def test_a_subject_belongs_to_one_cohort(tmp_path):
    local_cohort(tmp_path, [SubjectEntry("Case-demo001", frozenset({"US"}))])
    config = merged_config({"cohorts": {"mine": {"source": "local", "path": str(tmp_path)}}})
    with pytest.raises(ConfigError, match="subject Case-demo001 is also in cohort 'resect'"):
        resolve_cohorts(config)


def test_snakemake_stops_before_any_job_on_a_bad_config(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({"demo": {"cohorts": {"upenn": {"subjects": 2.5}}}, "colour": "red"})
    )
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-s", str(REPO / "workflow" / "Snakefile"),
         "-d", str(tmp_path / "run"), "--configfile", str(bad)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "unknown config key 'colour'" in output
    assert "'demo.cohorts.upenn.subjects'" in output
    assert "Job stats" not in output


@pytest.mark.parametrize(
    ("cohorts", "message"),
    [
        ({"remind": {"source": "demo", "raw": "data"}}, "'cohorts.remind.raw' only applies"),
        (
            {"remind": {"source": "dataset", "raw": "d", "package": "p"}},
            "only applies to dataset upenn",
        ),
        ({"resect": {"source": "demo", "path": "somewhere"}}, "'cohorts.resect.path' only applies"),
        (
            {"resect": {"source": "dataset", "raw": "d", "subjects": ["Case9"]}},
            "['Case9'] not in RESECT",
        ),
        (
            {"upenn": {"source": "dataset", "raw": "d"}},
            "missing config key 'cohorts.upenn.package'",
        ),
        (
            {"resect": {"source": "dataset", "raw": "d", "api": "idc"}},
            "'cohorts.resect.api' only applies to dataset remind",
        ),
        (
            {"remind": {"source": "dataset", "raw": "d", "manifest": "nowhere.tcia"}},
            "'cohorts.remind.manifest': file 'nowhere.tcia' does not exist",
        ),
    ],
)
def test_dataset_cohort_mistakes_name_their_key(cohorts, message):
    config = merged_config({"cohorts": cohorts})
    validate(config, SCHEMA)
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve_cohorts(config)


def test_dataset_cohorts_resolve_offline():
    config = merged_config(
        {
            "cohorts": {
                "remind": {"source": "dataset", "raw": "r"},
                "resect": {"source": "dataset", "raw": "s"},
            }
        }
    )
    cohorts = resolve_cohorts(config)
    assert len(cohorts["remind"].subjects) == 103 and cohorts["remind"].subjects[0] == "ReMIND-001"
    assert (
        cohorts["resect"].subjects[:2] == ("Case1", "Case2")
        and len(cohorts["resect"].subjects) == 23
    )
    assert cohorts["resect"].ultrasound_subjects == cohorts["resect"].subjects
    assert (
        str(cohorts["resect"].root).endswith("cohorts/resect") and cohorts["resect"].raw.name == "s"
    )
    for api in ("idc", "nbia"):
        validate(
            merged_config({"cohorts": {"remind": {"source": "dataset", "raw": "r", "api": api}}}),
            SCHEMA,
        )
    with pytest.raises(ConfigError, match=r"missing config key 'cohorts\.remind\.raw'"):
        validate(merged_config({"cohorts": {"remind": {"source": "dataset"}}}), SCHEMA)


def test_model_variants_must_fit_the_slices():
    key = r"'models\.variants\.deep\.architecture'"
    poolings = {"models": {"variants": {"deep": {"architecture": {"downsamplings": 7}}}}}
    with pytest.raises(ConfigError, match=rf"{key}: model: image_size 64 .* 2\^7"):
        validate(merged_config(poolings), SCHEMA)
    levels = {"models": {"variants": {"deep": {"architecture": {"latent_levels": 8}}}}}
    with pytest.raises(ConfigError, match=rf"{key}: model: latent_levels must be in 1\.\.6"):
        validate(merged_config(levels), SCHEMA)
    oblong = merged_config({"preprocessing": {"slice_size": [192, 96]}})
    with pytest.raises(ConfigError, match=r"'preprocessing\.slice_size'.*square"):
        validate(oblong, SCHEMA)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"evaluation": {"table1": {"no_such_method": "X"}}}, "evaluation.table1.no_such_method"),
        ({"evaluation": {"sweep_methods": ["pix2pix"]}}, "only the VAEs have a temperature"),
        (
            {"evaluation": {"figure_temperature": 0.5}},
            "'evaluation.figure_temperature': 0.5 is neither 0 nor table_temperature (0.7)",
        ),
        (
            {"baselines": {"architecture": {"downsamplings": 7}}},
            "'baselines.architecture': translator image_size 64 is not divisible",
        ),
        ({"evaluation": {"directions": [{"inputs": ["T1"], "target": "US"}]}}, "directions"),
    ],
)
def test_evaluation_mistakes_name_their_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(merged_config(override), SCHEMA)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"registration_experiment": {"model": "mvae_big"}},
            "'registration_experiment.model': 'mvae_big' is not a model variant",
        ),
        (
            {"registration_experiment": {"model": "mhvae"}},
            "variant 'mhvae' does not model ['ceT1', 'FLAIR']",
        ),
    ],
)
def test_downstream_model_mistakes_name_their_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(merged_config(override), SCHEMA)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"segmentation": {"methods": {"no_such_method": "X"}}},
            "segmentation.methods.no_such_method",
        ),
        ({"segmentation": {"nnunet": {"folds": 9}}}, "fewer than segmentation.nnunet.folds (9)"),
    ],
)
def test_segmentation_mistakes_name_their_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve_cohorts(merged_config(override))


def test_check_config_reads_overlays_in_order_and_names_the_bad_one(tmp_path, caplog):
    from iusynth.cli import main

    main(["check-config", str(REPO / "config" / "micro.yaml")])  # passes: no exit
    bad = tmp_path / "overlay.yaml"
    bad.write_text("evaluation:\n  table_temperature: .nan\n")
    with pytest.raises(SystemExit) as exited:
        main(["check-config", str(REPO / "config" / "micro.yaml"), str(bad)])
    assert exited.value.code == 1
    assert "config key 'evaluation.table_temperature': nan is not a finite number" in caplog.text
