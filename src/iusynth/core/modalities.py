"""The modalities, defined once: their names, display labels and the authors' names.

The model, the schema (checked against this by a test), the converters, the layout and
the tables all take the list from here; adding a modality starts with one row below.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Modality:
    """One imaging modality."""

    name: str  # in file names and the config, e.g. ``<subject>_T2.nii.gz``
    label: str  # in tables and figures
    authors_name: str  # in the authors' checkpoints and code
    ultrasound: bool  # iUS, as opposed to an MR sequence


TABLE = (
    Modality("US", "iUS", "us", ultrasound=True),
    Modality("T2", "T2", "t2", ultrasound=False),
    Modality("ceT1", "ceT1", "cet1", ultrasound=False),
    Modality("FLAIR", "FLAIR", "flair", ultrasound=False),
)
MODALITIES: tuple[str, ...] = tuple(m.name for m in TABLE)
ULTRASOUND: str = next(m.name for m in TABLE if m.ultrasound)
MR_SEQUENCES: tuple[str, ...] = tuple(m.name for m in TABLE if not m.ultrasound)
LABELS: dict[str, str] = {m.name: m.label for m in TABLE}
FROM_AUTHORS: dict[str, str] = {m.authors_name: m.name for m in TABLE}
