"""Which demo subjects exist and what each one has: a pure function of the config.

Only the standard library is used, so the Snakefile can call :func:`plan_cohort` to
know every subject and file before any job runs.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

from iusynth.cohorts.demo.settings import DemoCohortSettings
from iusynth.core.modalities import MR_SEQUENCES


@dataclass(frozen=True)
class CohortRole:
    """What a demo cohort stands in for: its modalities and labels, as in the real dataset."""

    description: str
    modalities: tuple[str, ...]
    mr_labels: str  # "brats" (labels 1/2/4) or "binary" (tumour core)
    has_ultrasound_labels: bool
    has_landmarks: bool
    may_miss_a_sequence: bool
    subject_prefix: str


# What a demo cohort can simulate, by its ``dataset`` (cohorts.<name>.dataset).
COHORT_ROLES: dict[str, CohortRole] = {
    "remind": CohortRole(
        description="ReMIND (paired iUS and MR, some sequences missing)",
        modalities=("US", *MR_SEQUENCES),
        mr_labels="binary",
        has_ultrasound_labels=True,
        has_landmarks=True,
        may_miss_a_sequence=True,
        subject_prefix="ReMIND-demo",
    ),
    "upenn": CohortRole(
        description="UPenn-GBM (MR only, BraTS labels)",
        modalities=MR_SEQUENCES,
        mr_labels="brats",
        has_ultrasound_labels=False,
        has_landmarks=False,
        may_miss_a_sequence=False,
        subject_prefix="UPENN-demo",
    ),
    "resect": CohortRole(
        description="RESECT / RESECT-SEG (iUS, FLAIR and ceT1, landmarks, iUS tumour masks)",
        modalities=("US", "ceT1", "FLAIR"),
        mr_labels="binary",
        has_ultrasound_labels=True,
        has_landmarks=True,
        may_miss_a_sequence=False,
        subject_prefix="Case-demo",
    ),
}


@dataclass(frozen=True)
class DemoSubjectPlan:
    """One demo subject: identity, tumour grade and the modalities it will have."""

    cohort: str
    dataset: str
    subject: str
    index: int
    grade: str
    modalities: tuple[str, ...]

    @property
    def role(self) -> CohortRole:
        """The role of the dataset the cohort simulates."""
        return COHORT_ROLES[self.dataset]

    def seed_words(self, seed: int) -> list[int]:
        """Entropy for numpy's SeedSequence: independent streams per cohort and subject."""
        return [seed, zlib.crc32(self.cohort.encode()), self.index]


def _chosen(chooser: random.Random, count: int, fraction: float) -> set[int]:
    """A random set of round(fraction * count) of the indices 1..count."""
    return set(chooser.sample(range(1, count + 1), round(fraction * count)))


def subject_prefix(cohort: str, dataset: str) -> str:
    """How a demo cohort names its subjects: as its dataset does, or after the cohort.

    A cohort named after its dataset (``remind`` simulating ReMIND) uses the dataset's
    prefix (``ReMIND-demo001``); any other (a second ReMIND-like cohort ``extra``) its own
    name (``extra-demo001``), so subject ids stay unique across cohorts.
    """
    return COHORT_ROLES[dataset].subject_prefix if cohort == dataset else f"{cohort}-demo"


def plan_cohort(
    cohort: str, dataset: str, seed: int, settings: DemoCohortSettings
) -> list[DemoSubjectPlan]:
    """Plan the subjects of one demo cohort simulating ``dataset``.

    Exactly round(fraction x subjects) subjects are low grade, and (where the dataset's
    role allows it) exactly round(fraction x subjects) lack one MR sequence, chosen at
    random; ultrasound is never the missing modality. The draws depend on the seed and
    the cohort's name and settings only.
    """
    if dataset not in COHORT_ROLES:
        raise ValueError(
            f"a demo cohort cannot simulate {dataset!r}; expected one of {sorted(COHORT_ROLES)}"
        )
    role = COHORT_ROLES[dataset]
    count = settings.subjects
    chooser = random.Random(f"{seed}:{cohort}")
    low_grade = _chosen(chooser, count, settings.low_grade_fraction)
    incomplete = _chosen(chooser, count, settings.missing_sequence_fraction)
    prefix = subject_prefix(cohort, dataset)
    plans = []
    for index in range(1, count + 1):
        modalities = role.modalities
        if index in incomplete:
            dropped = chooser.choice([m for m in modalities if m in MR_SEQUENCES])
            modalities = tuple(m for m in modalities if m != dropped)
        grade = "LGG" if index in low_grade else "HGG"
        plans.append(
            DemoSubjectPlan(cohort, dataset, f"{prefix}{index:03d}", index, grade, modalities)
        )
    return plans
