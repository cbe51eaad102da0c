"""A subject page: its sections assembled, written, and summarised for the index."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iusynth.core import layout
from iusynth.core.fileio import write_json
from iusynth.reporting.provenance import read_stamp
from iusynth.reporting.render import relative_link, render_template, write_text
from iusynth.reporting.run_warnings import Check, collect_warnings
from iusynth.reporting.settings import PageSettings
from iusynth.reporting.subject_page.downstream import downstream_section
from iusynth.reporting.subject_page.files import SubjectFiles
from iusynth.reporting.subject_page.inputs import inputs_section
from iusynth.reporting.subject_page.registration import registration_section
from iusynth.reporting.subject_page.summary import page_summary
from iusynth.reporting.subject_page.synthesis import synthesis_section

SECTION_TITLES = {
    "inputs": "Inputs",
    "registration": "Registration",
    "synthesis": "Synthesis",
    "downstream": "Downstream experiments",
    "warnings": "Warnings",
}


@dataclass
class SubjectPage:
    """Everything a subject page shows, and the key figures the index lists."""

    context: dict[str, Any]
    summary: dict[str, Any]


def build_page(
    files: SubjectFiles, settings: PageSettings, subject: str, output: Path
) -> SubjectPage:
    """Read the subject's files and build the page (to be written at ``output``)."""
    layout.check_subject_id(subject)
    checks: list[Check] = []
    stamp = read_stamp(files.provenance)
    sections: dict[str, Any] = {"inputs": inputs_section(files, settings, subject, checks)}
    if files.registration:
        sections["registration"] = registration_section(files, settings, subject, checks)
    if files.synthesis_metrics:
        sections["synthesis"] = synthesis_section(files, settings, subject, checks)
    downstream = downstream_section(files, settings, subject, checks)
    if downstream:
        sections["downstream"] = downstream
    run_warnings = collect_warnings(files.logs)
    sections["warnings"] = {
        "run": run_warnings,
        "checks": checks,
        "logs_read": sum(len(paths) for paths in files.logs.values()),
    }
    context = {
        "subject": subject,
        "cohort": settings.cohort,
        "source": settings.source,
        "sections": sections,
        "titles": {
            key: f"{number}. {SECTION_TITLES[key]}"
            for number, key in enumerate((k for k in SECTION_TITLES if k in sections), 1)
        },
        "absent": absent_sections(sections, settings, subject),
        "provenance": stamp,
        "provenance_link": relative_link(files.provenance, Path(output).parent),
    }
    return SubjectPage(context, page_summary(subject, settings, sections, run_warnings, checks))


def absent_sections(
    sections: dict[str, Any], settings: PageSettings, subject: str
) -> list[dict[str, str]]:
    """The stages this subject does not go through, each with the reason."""
    inputs = sections["inputs"]
    has_us = "US" in inputs["present"]
    paired = settings.cohort in (settings.trainval_cohort, settings.test_cohort)
    absent = []
    if "registration" not in sections:
        reason = (
            "no iUS to register"
            if not has_us
            else f"the {settings.cohort} cohort is neither the train/validation nor the test cohort"
        )
        absent.append({"title": SECTION_TITLES["registration"], "reason": reason})
    if "synthesis" not in sections:
        reason = (
            "no iUS"
            if not has_us
            else f"not evaluated: {inputs['role']}"
            if paired
            else "not an evaluation subject"
        )
        absent.append({"title": SECTION_TITLES["synthesis"], "reason": reason})
    if "downstream" not in sections:
        absent.append(
            {
                "title": SECTION_TITLES["downstream"],
                "reason": "takes part in neither the segmentation nor the registration experiment",
            }
        )
    return absent


def write_subject_page(
    files: SubjectFiles, settings: PageSettings, subject: str, output: Path, summary_path: Path
) -> dict[str, Any]:
    """Build and write a subject's page and its summary JSON; return the summary."""
    page = build_page(files, settings, subject, output)
    text = render_template("subject.html.j2", **page.context)
    size_mb = len(text.encode("utf-8")) / 1e6
    if size_mb > settings.reports.max_page_mb:
        raise ValueError(
            f"the page of {subject} would be {size_mb:.1f} MB, above reports.max_page_mb "
            f"({settings.reports.max_page_mb:g}): lower reports.figure_dpi or reports.figure_slices"
        )
    page.summary["page_mb"] = round(size_mb, 3)
    write_text(output, text)
    write_json(summary_path, page.summary)
    return page.summary
