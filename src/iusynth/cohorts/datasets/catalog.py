"""What the workflow knows about each real dataset before touching the network.

Subject lists (so the whole DAG is known offline), default addresses and licences.
Only the standard library is imported here: the Snakefile reads it at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

RESOURCES = files(__package__) / "data"  # package data, installed with the package


@dataclass(frozen=True)
class DatasetInfo:
    """One real dataset: its name, key (``cohorts.<name>.dataset``), licence and origin."""

    name: str
    key: str
    has_ultrasound: bool
    licence: str
    default_url: str
    how_to_get: str


REMIND = DatasetInfo(
    name="ReMIND",
    key="remind",
    has_ultrasound=True,
    licence=(
        "ReMIND (TCIA, DOI 10.7937/3RAG-D070) is licensed CC BY 4.0: cite the dataset and "
        "TCIA in any publication"
    ),
    default_url="https://s3.amazonaws.com",
    how_to_get=(
        "planned offline from IDC's index (idc-index-data) and downloaded by the workflow "
        "from IDC's public bucket (about 43.5 GB for the whole collection), or from TCIA's "
        "NBIA REST API with cohorts.remind.api: nbia"
    ),
)
# Where ReMIND's series come from, by cohorts.remind.api: IDC's public bucket (S3 endpoint;
# the bucket and folder of each series are in IDC's index), or TCIA's NBIA v4 REST API.
REMIND_APIS = {
    "idc": "https://s3.amazonaws.com",
    "nbia": "https://nbia.cancerimagingarchive.net/nbia-api/services/v4/",
}
UPENN = DatasetInfo(
    name="UPenn-GBM",
    key="upenn",
    has_ultrasound=False,
    licence=(
        "UPenn-GBM (TCIA, DOI 10.7937/TCIA.709X-DN49) is licensed CC BY 4.0: cite the "
        "dataset and TCIA in any publication"
    ),
    default_url="",
    how_to_get=(
        "TCIA distributes its NIfTI files only as an Aspera package (about 69 GB): download "
        "it with IBM Aspera Connect from the collection's TCIA page, then set "
        "cohorts.upenn.package to the downloaded folder (or archive)"
    ),
)
RESECT = DatasetInfo(
    name="RESECT",
    key="resect",
    has_ultrasound=True,
    licence=(
        "RESECT (NIRD, DOI 10.11582/2017.00004) is licensed CC BY 4.0; RESECT-SEG (OSF jv8bk) "
        "is licensed CC BY-NC-SA 4.0: non-commercial use only, share alike"
    ),
    default_url=(
        "https://data.archive.sigma2.no/dataset/5686d8fa-2003-4837-8e66-8e887fabe21e/download/"
        "RESECT"
    ),
    how_to_get="downloaded by the workflow from the NIRD archive and OSF",
)
# The two documented addresses of RESECT's folder in the NIRD archive (each holds
# NIFTI/Case{N}/...): the archive's download service, then its read-only S3 gateway.
RESECT_URLS: tuple[str, ...] = (
    RESECT.default_url,
    "https://s3.nird.sigma2.no/archive-ro/5686d8fa-2003-4837-8e66-8e887fabe21e/RESECT",
)
RESECT_SEG_URL = "https://files.osf.io/v1/resources/jv8bk/providers/osfstorage/?zip="
# The datasets a cohort can be (cohorts.<name>.dataset), by key.
DATASETS = {info.key: info for info in (REMIND, UPENN, RESECT)}

# RESECT's published cases (numbers 9, 10, 20 and 22 do not exist).
RESECT_CASES: tuple[int, ...] = (*range(1, 9), *range(11, 20), 21, *range(23, 28))


def resect_subject(case: int) -> str:
    """The subject id of a RESECT case, as the dataset names its folders."""
    return f"Case{case}"


def resect_case(subject: str) -> int:
    """The case number of a RESECT subject id, with a clear error for anything else."""
    if not subject.startswith("Case") or not subject[4:].isdigit():
        raise ValueError(f"{subject!r} is not a RESECT subject id (expected e.g. 'Case1')")
    case = int(subject[4:])
    if case not in RESECT_CASES:
        raise ValueError(f"RESECT has no case {case}; its cases are {list(RESECT_CASES)}")
    return case


def remind_subjects() -> tuple[str, ...]:
    """The ReMIND patients with a pre-dura iUS, from the shipped list."""
    path = RESOURCES / "remind_subjects.txt"
    lines = [line.strip() for line in path.read_text().splitlines()]
    return tuple(line for line in lines if line and not line.startswith("#"))


def default_subjects(dataset: str) -> tuple[str, ...]:
    """The subjects of a downloaded dataset when the config does not list them."""
    if dataset == "remind":
        return remind_subjects()
    if dataset == "resect":
        return tuple(resect_subject(case) for case in RESECT_CASES)
    raise ValueError(f"dataset {dataset!r} has no shipped subject list")
