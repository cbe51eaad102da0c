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

from iusynth.core import layout

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
    from iusynth.cohorts.datasets.download import MD5_HEX

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
    """The package's MD5 list near its root: ``UPENN-GBM.sums`` (any ``*.sums``), else ``*md5*``."""
    for matches in (
        lambda p: p.suffix.lower() == ".sums",
        lambda p: "md5" in p.name.lower(),
    ):
        for depth in range(3):
            pattern = "/".join(["*"] * (depth + 1))
            found = sorted(
                p for p in Path(package_root).glob(pattern) if p.is_file() and matches(p)
            )
            if found:
                return found[0]
    raise FileNotFoundError(
        f"no checksum list (UPENN-GBM.sums, or a file named like '*md5*') in {package_root}: "
        "set cohorts.upenn.checksums to the package's checksum file"
    )


OLD_FOLDER = "old"  # superseded copies some cases keep (same names, other MD5s): ignored


def _package_keys(
    listed: dict[str, str], nifti_root: Path
) -> tuple[dict[str, tuple[str, str]], int]:
    """Checksums keyed by path relative to the NIfTI root (``images_structural/...``).

    A listed path (``UPENN-GBM/NIfTI-files/images_structural/...``) is cut at its first
    folder that the NIfTI root holds. Paths through an ``old/`` folder are left out.
    Returns key -> (listed path, MD5), and how many ``old/`` lines were left out.
    """
    top = {entry.name for entry in nifti_root.iterdir() if entry.is_dir()}
    keyed, old = {}, 0
    for name, digest in listed.items():
        parts = PurePosixPath(name).parts
        if OLD_FOLDER in (part.lower() for part in parts[:-1]):
            old += 1
            continue
        start = next((i for i, part in enumerate(parts) if part in top), None)
        if start is not None:
            keyed["/".join(parts[start:])] = (name, digest)
    return keyed, old


def _case_listed(key: str, case: str) -> bool:
    """Whether a key (relative to the NIfTI root) is one of a case's files we read."""
    folder, _, rest = key.partition("/")
    if folder == STRUCTURAL:
        return rest.startswith(f"{case}/")
    return folder in ("images_segm", "automated_segm") and rest.startswith(f"{case}_")


def _check_listed_files_exist(
    keyed: dict[str, tuple[str, str]], nifti_root: Path, cases: list[str], checksum_path: Path
) -> None:
    """Every file the list names for a wanted case is in the package."""
    for case in cases:
        for key, (name, _) in keyed.items():
            if _case_listed(key, case) and not (nifti_root / key).is_file():
                raise FileNotFoundError(
                    f"{checksum_path} lists {name} (case {case}), which is not in the package "
                    f"({nifti_root / key} does not exist): the package is incomplete; download "
                    "that file (or the package) again with Aspera, or remove the case from "
                    "cohorts.upenn.subjects"
                )


def _verify_files(
    package_root: Path,
    nifti_root: Path,
    keyed: dict[str, tuple[str, str]],
    cases: list[str],
    checksum_path: Path,
    ledger: Any,
) -> tuple[int, list[str]]:
    """MD5-check the wanted cases' files (ledger-verified ones are skipped): verified, unlisted."""
    from iusynth.cohorts.datasets.download import FileRecord, md5_of

    verified, unlisted = 0, []
    for case in cases:
        files = case_files(package_root, case)
        for path in [*files.sequences.values(), *([files.label] if files.label else [])]:
            key = str(path.relative_to(package_root))
            if ledger.verified(key) is not None:
                verified += 1
                continue
            listed = keyed.get(path.relative_to(nifti_root).as_posix())
            if listed is None:
                unlisted.append(path.name)
                continue
            digest = md5_of(path)
            if digest != listed[1]:
                raise ValueError(
                    f"{path} fails its MD5 check against {checksum_path} ({digest} != "
                    f"{listed[1]}, line {listed[0]}): the download is corrupt; fetch this file "
                    "again with Aspera"
                )
            ledger.record(key, path, FileRecord(path.stat().st_size, digest))
            verified += 1
    return verified, unlisted


def verify_package(
    package_root: Path, checksums: Path | None, cases: list[str], output: Path, raw_dir: Path
) -> dict[str, Any]:
    """Check every file of the wanted cases against the package's MD5 list; record the result.

    The list (``UPENN-GBM.sums``: ``<md5>  <relative path>``) is keyed by relative path, not
    by file name: the ``old/`` folders of some cases hold same-named files with other MD5s
    and are ignored. A listed file of a wanted case missing from the package is an error.
    """
    from iusynth.cohorts.datasets.catalog import UPENN
    from iusynth.cohorts.datasets.download import Ledger, announce_licence
    from iusynth.core.fileio import write_json

    announce_licence(raw_dir, UPENN.name, UPENN.licence)
    package_root = Path(package_root)
    nifti_root = find_structural(package_root).parent
    checksum_path = Path(checksums) if checksums else find_checksum_list(package_root)
    keyed, old = _package_keys(read_checksums(checksum_path), nifti_root)
    _check_listed_files_exist(keyed, nifti_root, cases, checksum_path)
    ledger = Ledger(Path(raw_dir) / "ledger.jsonl")
    verified, unlisted = _verify_files(
        package_root, nifti_root, keyed, cases, checksum_path, ledger
    )
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
        "old_lines_ignored": old,
    }
    write_json(output, summary)
    return summary


def convert_case(package_root: Path, case: str, output: Path) -> dict[str, Any]:
    """Copy one case into the canonical layout after checking its grids and labels."""
    import numpy as np

    from iusynth.core.fileio import atomic_directory, load_nifti, write_json

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
