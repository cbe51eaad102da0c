"""The methods text of a run, written from its settings and its provenance.

One template (``templates/methods.j2``) is rendered twice, as Markdown and as a LaTeX
fragment: format-specific pieces (headings, citations, code, lists) come from
:class:`Formatter`, and every value the template prints is escaped for the format. The
works cited are collected while rendering and written to ``citations.bib``.

The text names what was done in which order with which parameters, the versions of the
software, and the data: a demo run says its cohorts are simulated; a real-data run names
each dataset with its DOI and licence and says how to acknowledge it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iusynth.methods import TRANSLATORS
from iusynth.reporting.citations import REFERENCES, Reference
from iusynth.reporting.markdown import markdown_escape
from iusynth.reporting.render import environment, latex_escape, render_template, write_text
from iusynth.reporting.settings import MethodsSettings


class Formatted(str):
    """Text already in the output format (not escaped again)."""

    __slots__ = ()


@dataclass(frozen=True)
class DatasetCredit:
    """What a run that used a real dataset must say about it."""

    name: str
    doi: str
    licence: str
    references: tuple[str, ...]
    acknowledgement: str


# The datasets each cohort role stands for, with their DOIs, licences and references.
DATASET_CREDITS: dict[str, tuple[DatasetCredit, ...]] = {
    "remind": (
        DatasetCredit(
            name="ReMIND",
            doi="10.7937/3RAG-D070",
            licence="CC BY 4.0",
            references=("juvekar2023remind_data", "juvekar2024remind", "clark2013tcia"),
            acknowledgement=(
                "ReMIND is distributed by The Cancer Imaging Archive (TCIA) under CC BY 4.0: "
                "cite the data set by its DOI, its descriptor paper and TCIA"
            ),
        ),
    ),
    "upenn": (
        DatasetCredit(
            name="UPenn-GBM",
            doi="10.7937/TCIA.709X-DN49",
            licence="CC BY 4.0",
            references=("bakas2021upenn_data", "bakas2022upenn", "clark2013tcia"),
            acknowledgement=(
                "UPenn-GBM is distributed by TCIA under CC BY 4.0: cite the data set by its "
                "DOI, its descriptor paper and TCIA"
            ),
        ),
    ),
    "resect": (
        DatasetCredit(
            name="RESECT",
            doi="10.11582/2017.00004",
            licence="CC BY 4.0",
            references=("xiao2017resect_data", "xiao2017resect"),
            acknowledgement=(
                "RESECT is distributed by the NIRD research data archive under CC BY 4.0: "
                "cite the data set by its DOI and its paper"
            ),
        ),
        DatasetCredit(
            name="RESECT-SEG",
            doi="10.48550/arXiv.2207.07494",
            licence="CC BY-NC-SA 4.0",
            references=("behboodi2022resectseg",),
            acknowledgement=(
                "RESECT-SEG is distributed on OSF (project jv8bk) under CC BY-NC-SA 4.0: "
                "non-commercial use only, derivatives under the same licence; cite its paper"
            ),
        ),
    ),
}
ROLE_NAMES = {"remind": "ReMIND", "upenn": "UPenn-GBM", "resect": "RESECT"}
DEMO_REFERENCES = ("fonov2011mni", "abraham2014nilearn")


class Formatter:
    """Format-specific pieces of the methods text (``md`` or ``tex``); collects citations."""

    def __init__(self, fmt: str) -> None:
        if fmt not in ("md", "tex"):
            raise ValueError(f"unknown methods format {fmt!r}: expected md or tex")
        self.fmt = fmt
        self.cited: list[str] = []

    def escape(self, value: Any) -> str:
        """Any printed value, escaped for the format (formatted pieces pass unchanged)."""
        if isinstance(value, Formatted):
            return value
        text = "" if value is None else str(value)
        return latex_escape(text) if self.fmt == "tex" else markdown_escape(text)

    def heading(self, text: str, level: int = 2) -> Formatted:
        """A section heading."""
        if self.fmt == "md":
            return Formatted("#" * level + " " + text)
        command = {1: "section", 2: "subsection", 3: "subsubsection"}[min(level, 3)]
        return Formatted(f"\\{command}*{{{latex_escape(text)}}}")

    def cite(self, *keys: str) -> Formatted:
        """A citation of works of :data:`REFERENCES` (numbered in Markdown)."""
        for key in keys:
            if key not in REFERENCES:
                raise KeyError(f"no reference {key!r} in iusynth.reporting.citations")
            if key not in self.cited:
                self.cited.append(key)
        if self.fmt == "tex":
            return Formatted("\\cite{" + ",".join(keys) + "}")
        return Formatted("[" + ", ".join(str(self.cited.index(k) + 1) for k in keys) + "]")

    def code(self, text: Any) -> Formatted:
        """A name as typed (a config key, a method, a file)."""
        if self.fmt == "tex":
            return Formatted("\\texttt{" + latex_escape(str(text)) + "}")
        if "`" in str(text):  # a name holding a backtick: a longer fence
            return Formatted(f"`` {text} ``")
        return Formatted(f"`{text}`")

    def names(self, items: Any) -> Formatted:
        """Several names as typed, comma-separated."""
        return Formatted(", ".join(self.code(item) for item in items))

    def count(self, number: int, noun: str) -> str:
        """``1 subject``, ``2 subjects``."""
        return f"{number} {noun}{'' if number == 1 else 's'}"

    def begin_list(self) -> Formatted:
        """Opens a bulleted list."""
        return Formatted("\\begin{itemize}" if self.fmt == "tex" else "")

    def end_list(self) -> Formatted:
        """Closes a bulleted list."""
        return Formatted("\\end{itemize}" if self.fmt == "tex" else "")

    def item(self) -> Formatted:
        """Starts an item of a list."""
        return Formatted("\\item" if self.fmt == "tex" else "-")

    def symbol(self, name: str) -> Formatted:
        """An arrow, a times sign or a tau, in the format."""
        symbols = {
            "to": ("→", "$\\rightarrow$"),
            "times": ("×", "$\\times$"),
            "tau": ("τ", "$\\tau$"),
            "pm": ("±", "$\\pm$"),
        }
        return Formatted(symbols[name][self.fmt == "tex"])

    def references(self) -> list[Reference]:
        """The works cited so far, in citation order."""
        return [REFERENCES[key] for key in self.cited]


def describe_cohorts(settings: MethodsSettings, cohorts: dict[str, Any]) -> list[dict[str, Any]]:
    """Per cohort: its role, source, subject count and, for real data, the dataset credits."""
    from iusynth.cohorts.demo.plan import COHORT_ROLES

    uses = {
        settings.trainval_cohort: "for training and validating the synthesis models",
        settings.test_cohort: "as the test cohort of synthesis, segmentation and registration",
    }
    uses.setdefault(
        settings.segmentation_cohort,
        "for the virtual iUS sweeps the segmentation networks train on",
    )
    described = []
    for name, entry in cohorts.items():
        dataset = entry.get("dataset")
        real = entry["source"] != "demo"
        described.append(
            {
                "name": name,
                "role_dataset": ROLE_NAMES.get(dataset, name) if dataset else name,
                "role": COHORT_ROLES[dataset].description if dataset else "a cohort of its own",
                "use": uses.get(name, "by none of the experiments"),
                "source": entry["source"],
                "subjects": len(entry["subjects"]),
                "root": entry["root"],
                "credits": DATASET_CREDITS.get(dataset, ()) if real and dataset else (),
                "api": settings.remind_api if dataset == "remind" else None,
            }
        )
    return described


FUSION_TEXT = {
    "poe": "a product of experts of the prior and the modalities' posteriors",
    "average": "an average of the modalities' posteriors",
    "concat": "a zero-filled concatenation of the modalities' features",
}
WEIGHTING_TEXT = {
    "authors": "each expert weighted by the inverse of its standard deviation, as the "
    "authors' code",
    "textbook": "each expert weighted by its precision",
}


def methods_context(
    settings: MethodsSettings, cohorts: dict[str, Any], provenance: dict[str, Any]
) -> dict[str, Any]:
    """Facts the methods template reads, derived from the settings and the provenance."""
    tables = settings.tables
    pretrained = sorted(settings.pretrained_variants)
    evaluated = list(dict.fromkeys([*tables.table1, *tables.table2]))
    labels = {**tables.table2, **tables.table1}
    described = describe_cohorts(settings, cohorts)
    uses = set(evaluated) | set(settings.segmentation_methods)
    return {
        "fusion": FUSION_TEXT[settings.architecture.fusion],
        "weighting": WEIGHTING_TEXT[settings.architecture.poe],
        "run": settings,
        "cohorts": described,
        "all_demo": all(c["source"] == "demo" for c in described),
        "any_demo": any(c["source"] == "demo" for c in described),
        "real": [c for c in described if c["source"] != "demo"],
        "trained_variants": [name for name in settings.variants if name not in pretrained],
        "pretrained_variants": pretrained,
        "directions": [direction.label for direction in tables.directions],
        "evaluated": [(method, labels.get(method, method)) for method in evaluated],
        "gan_baselines": [method for name, method in TRANSLATORS.items() if name in uses],
        "uses_mvae": "mvae" in settings.variants,
        "uses_mopoe": "mopoe" in settings.variants,
        "segmentation_methods": list(settings.segmentation_methods.items()),
        "versions": provenance["packages"],
        "reg_aladin": provenance["tools"].get("reg_aladin"),
        "code": provenance["code"],
        "config_files": [Path(f["path"]).name for f in provenance["config"]["files"]],
        "provenance_created": provenance["created_utc"],
        "python": provenance["machine"]["python"],
    }


def render_methods(
    settings: MethodsSettings, cohorts: dict[str, Any], provenance: dict[str, Any], fmt: str
) -> tuple[str, list[Reference]]:
    """The methods text in one format, and the works it cites (in citation order)."""
    formatter = Formatter(fmt)
    env = environment()
    env.finalize = formatter.escape
    env.filters["g"] = "{:g}".format  # 8 for the config's 8 (settings hold it as 8.0)
    text = env.get_template("methods.j2").render(
        fmt=fmt, f=formatter, **methods_context(settings, cohorts, provenance)
    )
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n", formatter.references()


def write_methods(
    settings: MethodsSettings, cohorts: dict[str, Any], provenance_path: Path, outputs: list[Path]
) -> None:
    """Write ``methods.md``, ``methods.tex`` and ``citations.bib`` (in that order of paths)."""
    provenance_path = Path(provenance_path)
    try:
        provenance = json.loads(provenance_path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(
            f"{provenance_path} is unreadable ({error}); re-run the rule write_provenance"
        ) from None
    markdown_path, latex_path, bib_path = (Path(p) for p in outputs)
    markdown, cited = render_methods(settings, cohorts, provenance, "md")
    latex, cited_tex = render_methods(settings, cohorts, provenance, "tex")
    if [r.key for r in cited] != [r.key for r in cited_tex]:
        raise RuntimeError("the Markdown and LaTeX methods texts cite different works")
    bib = render_template("citations.bib.j2", references=cited)
    write_text(markdown_path, markdown)
    write_text(latex_path, latex)
    write_text(bib_path, bib)
