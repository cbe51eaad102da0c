"""UPenn-GBM from the Aspera package the user downloaded: index, verify, convert.

The package (a folder, or a zip/tar of it) holds, somewhere below its root::

    images_structural/UPENN-GBM-00001_11/UPENN-GBM-00001_11_{T1,T1GD,T2,FLAIR}.nii.gz
    automated_segm/UPENN-GBM-00001_11_automated_approx_segm.nii.gz   (611 cases)
    images_segm/UPENN-GBM-00001_11_segm.nii.gz                       (147 expert labels)

in SRI-24 space (240 x 240 x 155, 1 mm) with BraTS labels 1/2/4. Baseline scans end in
``_11``. The expert label is used where it exists, else the automated one. Only the
standard library is imported at module level: the Snakefile indexes the package.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from iusynth import layout

log = logging.getLogger(__name__)

BASELINE = re.compile(r"^UPENN-GBM-\d{5}_11$")
STRUCTURAL = "images_structural"
SEQUENCE_FILES = {"T2": "T2", "ceT1": "T1GD", "FLAIR": "FLAIR"}
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
EXPECTED_SPACING_MM = 1.0


def is_archive(path: Path) -> bool:
    """Whether the package is given as an archive rather than a folder."""
    return Path(path).name.lower().endswith(ARCHIVE_SUFFIXES)


def _archive_names(path: Path) -> list[str]:
    """Member names of a zip or tar archive."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    with tarfile.open(path) as archive:
        return archive.getnames()


def baseline_cases(package: Path) -> tuple[str, ...]:
    """The baseline case ids (``UPENN-GBM-NNNNN_11``) a package folder or archive holds."""
    package = Path(package).expanduser()
    if not package.exists():
        raise FileNotFoundError(f"UPenn-GBM package {package} does not exist")
    if package.is_dir():
        structural = find_structural(package)
        names = [entry.name for entry in os.scandir(structural) if entry.is_dir()]
    else:
        parts = [PurePosixPath(name).parts for name in _archive_names(package)]
        names = [p[p.index(STRUCTURAL) + 1] for p in parts if STRUCTURAL in p[:-1]]
    cases = sorted({name for name in names if BASELINE.match(name)})
    if not cases:
        raise ValueError(
            f"UPenn-GBM package {package} holds no baseline case "
            f"({STRUCTURAL}/UPENN-GBM-NNNNN_11/ folders)"
        )
    return tuple(cases)


def find_structural(package: Path, depth: int = 4) -> Path:
    """The ``images_structural`` folder of a package, up to ``depth`` levels down."""
    package = Path(package)
    frontier = [package]
    for _ in range(depth + 1):
        for folder in frontier:
            if (folder / STRUCTURAL).is_dir():
                return folder / STRUCTURAL
        frontier = [child for folder in frontier for child in folder.iterdir() if child.is_dir()]
    raise FileNotFoundError(
        f"no {STRUCTURAL}/ folder within {depth} levels of {package}: is this the UPenn-GBM "
        "NIfTI package?"
    )


@dataclass(frozen=True)
class CaseFiles:
    """The files of one case in the package."""

    case: str
    sequences: dict[str, Path]
    label: Path | None
    label_kind: str  # "expert", "automated" or "none"


def case_files(package_root: Path, case: str) -> CaseFiles:
    """Locate one case's sequences and its best label in an (extracted) package."""
    structural = find_structural(package_root)
    root = structural.parent
    folder = structural / case
    sequences = {
        ours: folder / f"{case}_{theirs}.nii.gz" for ours, theirs in SEQUENCE_FILES.items()
    }
    missing = [path.name for path in sequences.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"UPenn-GBM case {case}: {missing} missing from {folder}")
    expert = root / "images_segm" / f"{case}_segm.nii.gz"
    automated = root / "automated_segm" / f"{case}_automated_approx_segm.nii.gz"
    if expert.is_file():
        return CaseFiles(case, sequences, expert, "expert")
    if automated.is_file():
        return CaseFiles(case, sequences, automated, "automated")
    return CaseFiles(case, sequences, None, "none")


def read_checksums(path: Path) -> dict[str, str]:
    """Relative path -> MD5 from a checksum list (``md5sum`` lines or a two-column CSV)."""
    from iusynth.datasets.download import MD5_HEX

    checksums = {}
    for number, line in enumerate(Path(path).read_text(errors="replace").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = MD5_HEX.search(line)
        rest = (line[: match.start()] + line[match.end() :]).strip(" ,;\t*") if match else ""
        if not match or not rest:
            if number == 1:
                continue  # a CSV header
            raise ValueError(f"{path}: line {number} is not '<md5>  <file>': {line[:80]!r}")
        checksums[rest.replace("\\", "/").lstrip("./")] = match.group(0).lower()
    if not checksums:
        raise ValueError(f"{path} lists no checksum")
    return checksums


def find_checksum_list(package_root: Path) -> Path:
    """The package's MD5 list: a file whose name contains 'md5', near its root."""
    for depth in range(3):
        pattern = "/".join(["*"] * (depth + 1))
        found = sorted(
            p for p in Path(package_root).glob(pattern) if p.is_file() and "md5" in p.name.lower()
        )
        if found:
            return found[0]
    raise FileNotFoundError(
        f"no MD5 list (a file named like '*md5*') in {package_root}: set cohorts.upenn.checksums "
        "to the package's checksum file"
    )


def verify_package(
    package_root: Path, checksums: Path | None, cases: list[str], output: Path, raw_dir: Path
) -> dict[str, Any]:
    """Check every listed file of the wanted cases against the MD5 list; record the result."""
    from iusynth.datasets.catalog import UPENN
    from iusynth.datasets.download import FileRecord, Ledger, announce_licence, md5_of
    from iusynth.fileio import write_json

    announce_licence(raw_dir, UPENN.name, UPENN.licence)
    package_root = Path(package_root)
    checksum_path = Path(checksums) if checksums else find_checksum_list(package_root)
    listed = read_checksums(checksum_path)
    by_name = {PurePosixPath(name).name: digest for name, digest in listed.items()}
    ledger = Ledger(Path(raw_dir) / "ledger.jsonl")
    verified, unlisted = 0, []
    for case in cases:
        files = case_files(package_root, case)
        paths = [*files.sequences.values(), *([files.label] if files.label else [])]
        for path in paths:
            key = str(path.relative_to(package_root))
            if ledger.verified(key) is not None:
                verified += 1
                continue
            expected = by_name.get(path.name)
            if expected is None:
                unlisted.append(path.name)
                continue
            digest = md5_of(path)
            if digest != expected:
                raise ValueError(
                    f"{path} fails its MD5 check against {checksum_path} ({digest} != "
                    f"{expected}): the download is corrupt; fetch this file again with Aspera"
                )
            ledger.record(key, path, FileRecord(path.stat().st_size, digest))
            verified += 1
    if unlisted:
        log.warning(
            "%d files are not in %s (kept unverified): %s",
            len(unlisted),
            checksum_path,
            unlisted[:5],
        )
    summary = {
        "package": str(package_root.resolve()),
        "checksums": str(checksum_path.resolve()),
        "cases": len(cases),
        "files_verified": verified,
        "files_unlisted": sorted(unlisted),
    }
    write_json(output, summary)
    return summary


def convert_case(package_root: Path, case: str, output: Path) -> dict[str, Any]:
    """Copy one case into the canonical layout after checking its grids and labels."""
    import numpy as np

    from iusynth.fileio import atomic_directory, load_nifti, write_json

    files = case_files(package_root, case)
    images = {seq: load_nifti(path) for seq, path in files.sequences.items()}
    for sequence, image in images.items():
        spacing = np.asarray(image.header.get_zooms()[:3])
        if not np.allclose(spacing, EXPECTED_SPACING_MM, atol=0.05):
            raise ValueError(
                f"{files.sequences[sequence]}: voxel spacing {spacing.tolist()} mm, but the "
                f"UPenn-GBM package is at {EXPECTED_SPACING_MM} mm: is this the "
                "pre-processed NIfTI package?"
            )
    with atomic_directory(output) as tmp:
        for sequence, path in files.sequences.items():
            shutil.copyfile(path, layout.subject_file(tmp, case, sequence))
        if files.label is not None:
            label = load_nifti(files.label)
            reference = images["ceT1"]
            if label.shape != reference.shape or not np.allclose(
                label.affine, reference.affine, atol=1e-3
            ):
                raise ValueError(
                    f"{files.label}: its grid differs from {files.sequences['ceT1']}; the "
                    "label must be in the case's SRI-24 grid"
                )
            values = set(np.unique(np.asarray(label.dataobj)).astype(int).tolist())
            if not values <= {
                0,
                layout.BRATS_NECROSIS,
                layout.BRATS_OEDEMA,
                layout.BRATS_ENHANCING,
            }:
                raise ValueError(f"{files.label}: labels {sorted(values)} are not BraTS 0/1/2/4")
            shutil.copyfile(files.label, layout.subject_file(tmp, case, "tumor-MR"))
        source = {
            "dataset": "UPenn-GBM",
            "files": {seq: str(path) for seq, path in files.sequences.items()},
            "label": str(files.label) if files.label else None,
            "label_kind": files.label_kind,
        }
        write_json(layout.subject_file(tmp, case, "source"), source)
    return source
