"""What the workflow hands a subject page: every file it reads, by role, and how it reads them.

Reading errors name the file and the rule to re-run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SubjectFiles:
    """Every file a subject page reads, by role (paths as the workflow names them)."""

    subject_dir: Path
    manifest: Path
    input_qc: Path
    provenance: Path
    logs: dict[str, list[Path]]
    splits: Path | None = None
    registration: dict[str, Path] = field(default_factory=dict)
    synthesis_slices: Path | None = None
    synthesis: dict[str, Path] = field(default_factory=dict)
    synthesis_metrics: dict[str, Path] = field(default_factory=dict)
    registration_experiment: Path | None = None
    segmentation: dict[str, dict[str, Path]] = field(default_factory=dict)
    sweep: Path | None = None
    synthetic_ius: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str) -> SubjectFiles:
        """From the JSON the workflow passes (``--files``)."""
        data = json.loads(text)

        def path(value: str | None) -> Path | None:
            return Path(value) if value else None

        def paths(mapping: dict[str, str] | None) -> dict[str, Path]:
            return {key: Path(value) for key, value in (mapping or {}).items()}

        return cls(
            subject_dir=Path(data["subject_dir"]),
            manifest=Path(data["manifest"]),
            input_qc=Path(data["input_qc"]),
            provenance=Path(data["provenance"]),
            logs={rule: [Path(p) for p in files] for rule, files in data["logs"].items()},
            splits=path(data.get("splits")),
            registration=paths(data.get("registration")),
            synthesis_slices=path(data.get("synthesis_slices")),
            synthesis=paths(data.get("synthesis")),
            synthesis_metrics=paths(data.get("synthesis_metrics")),
            registration_experiment=path(data.get("registration_experiment")),
            segmentation={
                method: paths(entry) for method, entry in (data.get("segmentation") or {}).items()
            },
            sweep=path(data.get("sweep")),
            synthetic_ius=paths(data.get("synthetic_ius")),
        )


def read_json(path: Path, what: str, rule: str) -> dict[str, Any]:
    """A JSON file of the workflow, with an error naming the file and the rule to re-run."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist; re-run the rule {rule}") from None
    except ValueError as error:
        raise ValueError(
            f"{what} {path} is not valid JSON ({error}); re-run the rule {rule}"
        ) from None


def read_csv(path: Path, columns: tuple[str, ...], rule: str) -> Any:
    """A CSV of the workflow that must hold ``columns``; errors name the file and the rule."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist; re-run the rule {rule}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ValueError(
            f"{path} is not a readable CSV ({error}); re-run the rule {rule}"
        ) from None
    missing = sorted(set(columns) - set(frame.columns))
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}; re-run the rule {rule}")
    return frame
