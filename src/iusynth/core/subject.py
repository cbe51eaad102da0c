"""One subject folder, read once per job: the record every subject-level stage receives.

A job's command-line handler reads its subject with :meth:`SubjectRecord.read` and hands
the record to the stage. The read lists the folder once (the file kinds present, see
:mod:`iusynth.core.layout`) and reads ``<subject>_source.json`` once (the MR sequence the
annotations are placed on); images are loaded and header-checked on first use and kept
on the record, so a stage that needs an image twice reads its file once.

Only stdlib is imported at module level (numpy and nibabel inside functions): the
Snakefile imports :mod:`iusynth.core`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iusynth.core import layout
from iusynth.core.modalities import MR_SEQUENCES

if TYPE_CHECKING:
    from iusynth.core.tags import LandmarkPairs

QFORM_SFORM_TOLERANCE_MM = 1e-2


def check_header(path: str | os.PathLike[str]) -> Any:
    """Load an image and refuse headers whose qform and sform disagree.

    A disagreement by a flip of x and y is the signature of LPS coordinates written into
    one of the two (NIfTI world is RAS), and it is named as such.
    """
    import numpy as np

    from iusynth.core.fileio import load_nifti

    image = load_nifti(path)
    qform, qcode = image.header.get_qform(coded=True)
    sform, scode = image.header.get_sform(coded=True)
    if qcode and scode and not np.allclose(qform, sform, atol=QFORM_SFORM_TOLERANCE_MM):
        flipped = np.diag([-1.0, -1.0, 1.0, 1.0]) @ qform
        hint = (
            "they differ by a flip of x and y: one of them holds LPS coordinates (NIfTI is RAS)"
            if np.allclose(flipped, sform, atol=QFORM_SFORM_TOLERANCE_MM)
            else "they describe different positions"
        )
        raise ValueError(
            f"image {path}: qform and sform disagree ({hint}); rewrite the header with the "
            "correct orientation before running the workflow"
        )
    return image


def check_finite(image: Any, path: str | os.PathLike[str]) -> Any:
    """Return ``image`` unless its voxels hold NaN or Inf, which are refused with their count.

    Left in, they would silently become background inside the field of view (MR) or empty
    the iUS sector; the raw file is never rewritten by the workflow, so the fix is the
    user's.
    """
    import numpy as np

    data = np.asanyarray(image.dataobj)
    if not np.issubdtype(data.dtype, np.floating):
        return image
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        nans = int(np.count_nonzero(np.isnan(data)))
        raise ValueError(
            f"image {path} has {bad} non-finite voxels ({nans} NaN, {bad - nans} Inf) of "
            f"{data.size}: they would silently become background; replace them (e.g. by 0) "
            "in a corrected copy of the file, or re-convert the dataset, then rerun"
        )
    return image


def _present_kinds(folder: Path, subject: str) -> frozenset[str]:
    """The file kinds of ``subject`` in ``folder``, from one listing of the folder."""
    kinds = {layout.subject_file(folder, subject, kind).name: kind for kind in layout.KINDS}
    try:
        with os.scandir(folder) as entries:
            return frozenset(kinds[e.name] for e in entries if e.name in kinds and e.is_file())
    except (FileNotFoundError, NotADirectoryError) as error:
        raise FileNotFoundError(
            f"subject folder {folder} of subject {subject} does not exist or is not a folder: "
            "check --subject-dir (a cohort's subject folders are named by subject id)"
        ) from error


def _annotated_sequence(folder: Path, subject: str, kinds: frozenset[str]) -> str | None:
    """The MR sequence ``source.json`` names as ``annotation_sequence``, if the subject has it."""
    if "source" not in kinds:
        return None
    path = layout.subject_file(folder, subject, "source")
    try:
        source = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(
            f"{path} is unreadable or not JSON ({error}): re-run the dataset conversion"
        ) from error
    if not isinstance(source, dict):
        raise ValueError(f"{path} must hold a JSON object: re-run the dataset conversion")
    named = source.get("annotation_sequence")
    return named if named in MR_SEQUENCES and named in kinds else None


@dataclass(frozen=True)
class SubjectRecord:
    """A subject folder as one job sees it: the files present, read once.

    ``annotated`` is the MR sequence ``source.json`` places the MR-side annotations on
    (``tumor-MR``, the landmarks' MR points) when the subject has it, else None (the
    reference sequence). Images and landmarks are read on first use and cached.
    """

    subject: str
    folder: Path
    kinds: frozenset[str]
    annotated: str | None = None
    raw_sha256: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    _cache: dict[tuple[str, ...], Any] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    @classmethod
    def read(
        cls, folder: str | os.PathLike[str], subject: str | None = None, raw_sha256: str = ""
    ) -> SubjectRecord:
        """Read a subject folder (named by the subject id unless ``subject`` is given).

        ``raw_sha256`` (``name=digest`` pairs, :mod:`iusynth.core.raw_digests`) are the
        digests the workflow planned the job with: a file whose bytes differ is refused.
        """
        from iusynth.core.raw_digests import check_digests

        folder = Path(folder)
        subject = layout.check_subject_id(folder.name if subject is None else subject)
        kinds = _present_kinds(folder, subject)
        digests = check_digests(folder, raw_sha256, subject)
        return cls(subject, folder, kinds, _annotated_sequence(folder, subject, kinds), digests)

    def path(self, kind: str) -> Path:
        """The path of one file kind of the subject (present or not)."""
        return layout.subject_file(self.folder, self.subject, kind)

    def files(self) -> list[Path]:
        """The subject's files, sorted: what a job reading the subject depends on."""
        return sorted(self.path(kind) for kind in self.kinds)

    def has(self, kind: str) -> bool:
        """Whether the subject has this file kind."""
        return kind in self.kinds

    @property
    def mr_sequences(self) -> tuple[str, ...]:
        """The MR sequences present, in canonical order."""
        return tuple(sequence for sequence in MR_SEQUENCES if sequence in self.kinds)

    @property
    def entry(self) -> layout.SubjectEntry:
        """The subject's row of a cohort manifest."""
        return layout.SubjectEntry(self.subject, self.kinds & frozenset(layout.FILE_KINDS))

    def reference(self, order: Sequence[str]) -> str:
        """The first MR sequence of ``order`` the subject has, else a clear error."""
        for sequence in order:
            if self.has(sequence):
                return sequence
        raise FileNotFoundError(
            f"subject {self.subject} has no reference MR: none of {list(order)} is in "
            f"{self.folder} (expected e.g. {self.path(order[0]).name})"
        )

    def annotation_sequence(self, reference: str) -> str:
        """The MR sequence whose world the MR-side annotations are in.

        ``source.json``'s ``annotation_sequence`` when it names a sequence the subject has,
        else ``reference``.
        """
        return self.annotated or reference

    def landmarks(self) -> LandmarkPairs:
        """The MR/iUS landmark pairs (RAS mm), with a clear error when there are none."""
        if ("landmarks",) not in self._cache:
            from iusynth.core.tags import read_tag_file

            path = self.path("landmarks")
            if not self.has("landmarks"):
                raise FileNotFoundError(
                    f"subject {self.subject} has no landmarks: {path} is missing (MR/iUS "
                    "landmark pairs as an MNI tag file; the registration experiment needs them)"
                )
            self._cache[("landmarks",)] = read_tag_file(path)
        return self._cache[("landmarks",)]

    def image(self, kind: str) -> Any:
        """An image of the subject (a ``nibabel`` image), loaded and checked once.

        The header (:func:`check_header`) and the voxels (:func:`check_finite`: no NaN or
        Inf) are checked on this first read.
        """
        if ("image", kind) not in self._cache:
            path = self.path(kind)
            self._cache[("image", kind)] = check_finite(check_header(path), path)
        return self._cache[("image", kind)]

    def ultrasound(self) -> Any:
        """The iUS image (header checked), refusing one with no foreground."""
        import numpy as np

        image = self.image("US")
        if not (np.asarray(image.dataobj) > 0).any():
            raise ValueError(
                f"iUS image {self.path('US')} has no foreground (no voxel > 0): the acquisition "
                "is empty or was saved with the wrong data type; re-convert it"
            )
        return image
