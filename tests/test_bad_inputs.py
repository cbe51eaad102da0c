"""Bad inputs stop the run with a message naming the file or key and the fix.

One row of ``CASES`` per case: how to make the fault in a copy of a tiny cohort, what to
run, and what must come out. A new case is one new row (and its entry in
docs/troubleshooting.md, which a test below keeps in step with the rows). Every row also
checks that the raw files of the cohort are left exactly as the fault made them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from iusynth import jobs
from iusynth.cohorts.datasets import download
from iusynth.cohorts.registry import resolve_cohorts
from iusynth.core import layout
from iusynth.core.config import ConfigError
from iusynth.core.fileio import CorruptFile, save_nifti
from iusynth.core.splits import kfold
from iusynth.core.subject import SubjectRecord
from iusynth.core.torch_io import UnsafeFile
from iusynth.preprocessing.checks import ImplausibleRegistration

from . import fake_servers as fake
from .conftest import REPO, merged_config, policy

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
TROUBLESHOOTING = REPO / "docs" / "troubleshooting.md"
SUBJECTS = ("P01", "P02", "P03")
SHAPE = (8, 8, 8)
KINDS = ("US", "T2", "ceT1", "FLAIR")


@dataclass
class Bench:
    """A tiny local cohort (``root``), a scratch folder and, on demand, a local HTTP server."""

    root: Path
    scratch: Path
    _server: fake.FakeServer | None = None
    _httpd: Any = None
    held: ExitStack = field(default_factory=ExitStack)  # locks a case holds, released at close

    @property
    def server(self) -> fake.FakeServer:
        """The loopback HTTP server, started on first use."""
        if self._server is None:
            self._server = fake.FakeServer()
            self._httpd = fake.start(self._server)
        return self._server

    def close(self) -> None:
        """Stop the server, if it was started."""
        if self._httpd is not None:
            self._httpd.shutdown()
        self.held.close()

    def file(self, subject: str, kind: str) -> Path:
        """The path of one file of a subject of the cohort."""
        return layout.subject_file(self.root / subject, subject, kind)

    @property
    def manifest(self) -> Path:
        """The cohort's subjects.tsv."""
        return self.root / layout.MANIFEST_NAME

    def config(self, override: dict | None = None) -> dict:
        """The default config with the tiny cohort as local cohort 'mine'."""
        cohorts = {"cohorts": {"mine": {"source": "local", "path": str(self.root)}}}
        return merged_config(cohorts, override or {})


def make_cohort(root: Path) -> None:
    """Three subjects with every modality as small float32 volumes, and their manifest."""
    rng = np.random.default_rng(0)
    for subject in SUBJECTS:
        for kind in KINDS:
            volume = rng.uniform(1.0, 100.0, SHAPE).astype(np.float32)
            save_nifti(layout.subject_file(root / subject, subject, kind), volume, np.eye(4))
    entries = [layout.SubjectEntry(s, frozenset(KINDS)) for s in SUBJECTS]
    layout.write_manifest(root / layout.MANIFEST_NAME, entries)


# --- how the faults are made ----------------------------------------------------------


def edit_manifest(bench: Bench, edit: Callable[[list[str]], list[str]]) -> None:
    """Rewrite the manifest's lines through ``edit``."""
    lines = bench.manifest.read_text().splitlines()
    bench.manifest.write_text("\n".join(edit(lines)) + "\n")


def set_column(bench: Bench, subject: str, kind: str, value: int) -> None:
    """Set one 1/0 cell of the manifest."""
    column = ["subject", *layout.FILE_KINDS].index(kind)

    def edit(lines: list[str]) -> list[str]:
        rows = [line.split("\t") for line in lines]
        for row in rows:
            if row[0] == subject:
                row[column] = str(value)
        return ["\t".join(row) for row in rows]

    edit_manifest(bench, edit)


def with_non_finite(bench: Bench, subject: str, kind: str, nans: int) -> None:
    """Put ``nans`` NaN voxels and one Inf into an image."""
    path = bench.file(subject, kind)
    import nibabel as nib

    image = nib.load(path)
    data = np.asarray(image.dataobj, dtype=np.float32).copy()
    flat = data.reshape(-1)
    flat[:nans] = np.nan
    flat[-1] = np.inf
    save_nifti(path, data, image.affine)


def resolve(bench: Bench, override: dict | None = None) -> Callable[[], Any]:
    """Resolving the cohorts, as common.smk does while the DAG is built."""
    return lambda: resolve_cohorts(bench.config(override))


def validate(bench: Bench, override: dict) -> Callable[[], Any]:
    """The configuration's checks (schema, cross-field rules, every job's settings)."""
    return lambda: jobs.validate(bench.config(override), SCHEMA)


def duplicated_row(bench: Bench) -> Callable[[], Any]:
    """A row of subjects.tsv repeated at its end."""
    edit_manifest(bench, lambda lines: [*lines, lines[1]])
    return resolve(bench)


def id_with_newline(bench: Bench) -> Callable[[], Any]:
    """A subject id ending in a newline (a quoted field), which ``$`` alone would accept."""
    edit_manifest(bench, lambda lines: [lines[0], '"P01\n"' + lines[1][3:], *lines[2:]])
    return resolve(bench)


def id_too_long(bench: Bench) -> Callable[[], Any]:
    """A 300-character subject id: derived file names would pass the system's limit."""
    edit_manifest(bench, lambda lines: [lines[0], "P" * 300 + lines[1][3:], *lines[2:]])
    return resolve(bench)


def duplicated_split_subject(bench: Bench) -> Callable[[], Any]:
    """A subject list with a repeated subject, split into folds."""
    return lambda: kfold(["S1", "S2", "S3", "S1"], 2, 0)


def nan_in_mr(bench: Bench) -> Callable[[], Any]:
    """NaN and Inf voxels in an MR sequence, read as a stage reads it."""
    with_non_finite(bench, "P01", "T2", nans=40)
    return lambda: SubjectRecord.read(bench.root / "P01").image("T2")


def nan_in_ius(bench: Bench) -> Callable[[], Any]:
    """NaN and Inf voxels in the iUS, read as a stage reads it."""
    with_non_finite(bench, "P02", "US", nans=7)
    return lambda: SubjectRecord.read(bench.root / "P02").ultrasound()


def replaced_by_older_file(bench: Bench) -> Callable[[], Any]:
    """The T2 replaced by another file carrying an older timestamp (``cp -p``, ``rsync -a``)
    after the workflow planned the job with the digests of the files it had seen."""
    import os

    from iusynth.core.raw_digests import format_digests, subject_digests

    record = SubjectRecord.read(bench.root / "P01")
    planned = format_digests(subject_digests(record.files()))
    path = bench.file("P01", "T2")
    stamp = path.stat()
    save_nifti(path, np.ones(SHAPE, np.float32), np.eye(4))
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns - 86_400 * 10**9))
    return lambda: SubjectRecord.read(bench.root / "P01", "P01", planned)


def t2_listed_missing(bench: Bench) -> Callable[[], Any]:
    """T2 listed in subjects.tsv, its file deleted."""
    bench.file("P01", "T2").unlink()
    return resolve(bench)


def flair_listed_missing(bench: Bench) -> Callable[[], Any]:
    """FLAIR listed in subjects.tsv, its file deleted."""
    bench.file("P03", "FLAIR").unlink()
    return resolve(bench)


def file_not_listed(bench: Bench) -> Callable[[], Any]:
    """A FLAIR file present while subjects.tsv marks it 0."""
    set_column(bench, "P02", "FLAIR", 0)
    return resolve(bench)


def subject_without_folder(bench: Bench) -> Callable[[], Any]:
    """A subject listed in subjects.tsv without its folder."""
    for kind in KINDS:
        bench.file("P03", kind).unlink()
    (bench.root / "P03").rmdir()
    return resolve(bench)


def fold_out_of_range(bench: Bench) -> Callable[[], Any]:
    """models.fold beyond preprocessing.splits.folds."""
    return validate(bench, {"models": {"fold": 7}})


def bins_not_increasing(bench: Bench) -> Callable[[], Any]:
    """The registration experiment's bin edges in decreasing order."""
    return validate(bench, {"registration_experiment": {"experiment": {"bins_mm": [12, 8]}}})


def nan_temperature(bench: Bench) -> Callable[[], Any]:
    """``evaluation.table_temperature: .nan`` (YAML's NaN), which the schema's bounds let by."""
    return validate(bench, {"evaluation": {"table_temperature": float("nan")}})


def config_file(bench: Bench, text: str) -> Callable[[], Any]:
    """A config overlay with ``text``, read as ``iusynth check-config`` reads it."""
    from iusynth.core.config import read_config_file

    path = bench.root.parent / "mine.yaml"  # beside the cohort, not in it
    path.write_text(text)
    return lambda: read_config_file(path)


def label_with_markup(bench: Bench) -> Callable[[], Any]:
    """A Table 1 label holding a script element (it would reach the report's params)."""
    return validate(bench, {"evaluation": {"table1": {"mmhvae": "<script>alert(1)</script>"}}})


def short_sha256(bench: Bench) -> Callable[[], Any]:
    """A pretrained variant whose SHA-256 is not 64 hexadecimal digits."""
    pretrained = {"path": str(bench.scratch / "CP_main_1000.pth"), "sha256": "abc123"}
    return validate(bench, {"models": {"variants": {"authors": {"pretrained": pretrained}}}})


def file_url(bench: Bench) -> Callable[[], Any]:
    """A pretrained variant whose local file is given as a file:// url."""
    url = (bench.scratch / "CP_main_1000.pth").as_uri()
    pretrained = {"url": url, "sha256": "0" * 64}
    return validate(bench, {"models": {"variants": {"authors": {"pretrained": pretrained}}}})


def pretrained_folder(bench: Bench) -> Callable[[], Any]:
    """A pretrained variant given the folder of the authors' checkpoint, not the file."""
    return validate(
        bench, {"models": {"variants": {"authors": {"pretrained": str(bench.scratch)}}}}
    )


def truncated_checkpoint(bench: Bench) -> Callable[[], Any]:
    """A model.pt cut in half, loaded as synthesis loads it."""
    import torch

    from iusynth.training.mmhvae import load_model

    path = bench.scratch / "model.pt"
    torch.save({"weights": torch.zeros(4096)}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return lambda: load_model(path)


def model_that_runs_code(bench: Bench) -> Callable[[], Any]:
    """A model.pt whose pickle would create a file when loaded, loaded as synthesis does."""
    import torch

    from iusynth.training.mmhvae import load_model

    from .test_checkpoint_binding import RunsWhenUnpickled

    path = bench.scratch / "model.pt"
    torch.save({"model": RunsWhenUnpickled(bench.scratch / "ran")}, path)
    return lambda: load_model(path)


def checkpoint_in_use(bench: Bench) -> Callable[[], Any]:
    """A second trainer started on a checkpoint another trainer holds (its lock)."""
    import contextlib

    from iusynth.core.processes import exclusive_lock
    from iusynth.training.loop import fit

    path = bench.scratch / "checkpoint.pt"
    bench.held.enter_context(exclusive_lock(path, "checkpoint"))  # the first trainer
    output, losses = bench.scratch / "model.pt", bench.scratch / "losses.csv"
    with contextlib.suppress(FileNotFoundError):
        output.unlink()
    return lambda: fit(lambda: None, output, path, losses, digest="0" * 64)


def xml_error_for_checksum(bench: Bench) -> Callable[[], Any]:
    """An XML error document served (HTTP 200) where a checksum sidecar should be."""
    body = b"<Error><Code>AccessDenied</Code><Message>Anonymous access is forbidden</Message>"
    bench.server.add("/P01_T2.nii.gz.md5", fake.Reply(body + b"</Error>"))
    url = f"{bench.server.url}/P01_T2.nii.gz.md5"
    return lambda: download.fetch_text(url, policy=policy(2))


def flipped_header(bench: Bench) -> Callable[[], Any]:
    """A ceT1 whose qform and sform are both flipped (LPS written as RAS), checked after
    its registration to the T2 (the arrays stand for the files the message names)."""
    from iusynth.preprocessing.checks import Volume, check_registration

    from .test_registration_checks import CHECKS, LPS_AS_RAS, affine, head

    reference = Volume(bench.file("P01", "T2"), head("T2"), affine())
    floating = Volume(bench.file("P01", "ceT1"), head("ceT1"), affine(LPS_AS_RAS))
    return lambda: check_registration(reference, floating, np.eye(4), CHECKS)


def flipped_ius_header(bench: Bench) -> Callable[[], Any]:
    """An iUS whose header is flipped (LPS written as RAS), checked after its registration
    to the T2, the subject's MR sequences agreeing with each other."""
    from iusynth.core.subject import SubjectRecord
    from iusynth.preprocessing.checks import Volume, check_registration
    from iusynth.preprocessing.registration import flip_suspect

    from .test_registration_checks import CHECKS, LPS_AS_RAS, affine, head

    record = SubjectRecord.read(bench.root / "P01", "P01")
    reference = Volume(bench.file("P01", "US"), head("T2"), affine(LPS_AS_RAS))
    floating = Volume(bench.file("P01", "T2"), head("T2"), affine())
    suspect = flip_suspect(record)
    return lambda: check_registration(reference, floating, np.eye(4), CHECKS, suspect=suspect)


def implausible_motion(bench: Bench) -> Callable[[], Any]:
    """A registration that turned the ceT1 by 28 degrees from its header."""
    from iusynth.preprocessing.checks import Volume, check_registration

    from .test_registration_checks import CHECKS, affine, head, rigid

    reference = Volume(bench.file("P01", "T2"), head("T2"), affine())
    floating = Volume(bench.file("P01", "ceT1"), head("ceT1"), affine())
    return lambda: check_registration(reference, floating, rigid(28.0, (0.0, 0.0, 0.0)), CHECKS)


def manifest_with_bom(bench: Bench) -> Callable[[], Any]:
    """subjects.tsv saved with a UTF-8 byte-order mark (accepted)."""
    bench.manifest.write_bytes(b"\xef\xbb\xbf" + bench.manifest.read_bytes())
    return lambda: resolve_cohorts(bench.config())["mine"].subjects


def manifest_not_utf8(bench: Bench) -> Callable[[], Any]:
    """subjects.tsv with a Latin-1 byte."""
    bench.manifest.write_bytes(bench.manifest.read_bytes() + "P\xe904\n".encode("latin-1"))
    return resolve(bench)


def xml_error_page(bench: Bench) -> Callable[[], Any]:
    """An object store's XML error document served with HTTP 200."""
    body = b'<?xml version="1.0"?><Error><Code>NoSuchKey</Code><Message>gone</Message></Error>'
    bench.server.add("/P01_T2.nii.gz", fake.Reply(body, content_type="application/xml"))
    url = f"{bench.server.url}/P01_T2.nii.gz"
    return lambda: download.fetch(url, bench.scratch / "P01_T2.nii.gz", policy=policy(2))


def persistent_md5_mismatch(bench: Bench) -> Callable[[], Any]:
    """A server whose copy never matches the expected MD5."""
    bench.server.add("/P01_T2.nii.gz", fake.Reply(b"a damaged copy"))
    url = f"{bench.server.url}/P01_T2.nii.gz"
    expected = "0" * 32
    destination = bench.scratch / "P01_T2.nii.gz"
    return lambda: download.fetch(url, destination, policy=policy(3), expected_md5=expected)


# --- the cases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad input: the fault, and the error (or, for an accepted input, the result).

    ``names`` are fragments naming the file or key (``{root}`` and ``{scratch}`` are the
    bench's folders); ``fix`` is the fragment that says what to do, and must also appear
    in the case's section of docs/troubleshooting.md.
    """

    id: str
    reported: str  # the item of the issue it answers (issue 17's, or e.g. 32.1)
    fault: Callable[[Bench], Callable[[], Any]]
    error: type[BaseException] | None
    names: tuple[str, ...]
    fix: str
    returns: Any = None  # what the action returns when ``error`` is None


CASES = (
    Case(
        "duplicate-subject-row",
        "2",
        duplicated_row,
        ConfigError,
        ("{root}/subjects.tsv", "subject P01 is listed twice (lines 2 and 5)"),
        "delete one of the two rows",
    ),
    Case(
        "subject-id-with-newline",
        "32.w4",
        id_with_newline,
        ValueError,
        ("{root}/subjects.tsv: line 2", "subject id 'P01\\n'"),
        "rename the subject (its folder and its row)",
    ),
    Case(
        "subject-id-too-long",
        "32.w5",
        id_too_long,
        ValueError,
        ("{root}/subjects.tsv: line 2", "has 300 characters, more than 64"),
        "give the subject a shorter id",
    ),
    Case(
        "duplicate-subject-in-splits",
        "2",
        duplicated_split_subject,
        ValueError,
        ("subjects ['S1']", "both training and validation"),
        "remove the duplicated rows of the cohort's subjects.tsv",
    ),
    Case(
        "t2-listed-but-missing",
        "6",
        t2_listed_missing,
        ConfigError,
        ("{root}/subjects.tsv lists T2 for subject P01", "{root}/P01/P01_T2.nii.gz is missing"),
        "restore the file, or set the column to 0",
    ),
    Case(
        "flair-listed-but-missing",
        "6",
        flair_listed_missing,
        ConfigError,
        ("lists FLAIR for subject P03", "{root}/P03/P03_FLAIR.nii.gz is missing"),
        "restore the file, or set the column to 0",
    ),
    Case(
        "file-present-but-not-listed",
        "6",
        file_not_listed,
        ConfigError,
        ("{root}/subjects.tsv says subject P02 has no FLAIR", "{root}/P02/P02_FLAIR.nii.gz"),
        "set the column to 1, or move the file out of the cohort folder",
    ),
    Case(
        "subject-without-folder",
        "7",
        subject_without_folder,
        ConfigError,
        ("{root}/subjects.tsv lists subject P03", "folder {root}/P03 does not exist"),
        "add the folder, or delete the subject's row",
    ),
    Case(
        "manifest-with-bom",
        "7",
        manifest_with_bom,
        None,
        (),
        "accepted as it is",
        returns=SUBJECTS,
    ),
    Case(
        "manifest-not-utf8",
        "7",
        manifest_not_utf8,
        ConfigError,
        ("{root}/subjects.tsv is not UTF-8 text",),
        "save it as UTF-8 (tab-separated)",
    ),
    Case(
        "nan-in-mr",
        "5",
        nan_in_mr,
        ValueError,
        ("{root}/P01/P01_T2.nii.gz", "41 non-finite voxels (40 NaN, 1 Inf) of 512"),
        "replace them (e.g. by 0) in a corrected copy of the file",
    ),
    Case(
        "nan-in-ius",
        "5",
        nan_in_ius,
        ValueError,
        ("{root}/P02/P02_US.nii.gz", "8 non-finite voxels (7 NaN, 1 Inf)"),
        "replace them (e.g. by 0) in a corrected copy of the file",
    ),
    Case(
        "raw-file-replaced-by-an-older-one",
        "32.5",
        replaced_by_older_file,
        ValueError,
        ("raw file {root}/P01/P01_T2.nii.gz of subject P01 changed after the workflow planned",),
        "rerun snakemake, which reruns this subject's jobs on the new file",
    ),
    Case(
        "fold-out-of-range",
        "7",
        fold_out_of_range,
        ConfigError,
        ("config key 'models.fold'", "expected 0 to 4"),
        "lower models.fold or raise preprocessing.splits.folds",
    ),
    Case(
        "bins-not-increasing",
        "7",
        bins_not_increasing,
        ConfigError,
        ("config key 'registration_experiment.experiment.bins_mm'", "[12.0, 8.0]"),
        "list them in increasing order",
    ),
    Case(
        "nan-setting",
        "32.4",
        nan_temperature,
        ConfigError,
        ("config key 'evaluation.table_temperature': nan is not a finite number",),
        "give a number",
    ),
    Case(
        "config-with-a-yaml-error",
        "32.w",
        lambda bench: config_file(bench, "evaluation:\n  temperatures: [0.5, 0.7\n"),
        ConfigError,
        ("mine.yaml, line 3, column 1: not valid YAML", "line 2, column 17"),
        "fix it there (indent with spaces, not tabs; close every bracket and quote)",
    ),
    Case(
        "config-that-is-a-list",
        "32.w",
        lambda bench: config_file(bench, "- evaluation\n- table_temperature: 0.5\n"),
        ConfigError,
        ("mine.yaml holds a YAML list at its top level",),
        "write 'section:' lines with the keys indented under them",
    ),
    Case(
        "markup-in-a-label",
        "32.2",
        label_with_markup,
        ConfigError,
        ("config key 'evaluation.table1.mmhvae'", "holds '<', '>' or a control character"),
        "remove them",
    ),
    Case(
        "bad-sha256",
        "32.w2",
        short_sha256,
        ConfigError,
        ("config key 'models.variants.authors.pretrained.sha256'", "'abc123' does not match"),
        "the key holds the file's SHA-256",
    ),
    Case(
        "file-url-as-pretrained",
        "32.w2",
        file_url,
        ConfigError,
        ("config key 'models.variants.authors.pretrained.url'", "does not match '^https?://'"),
        "a file on this machine is given as path, not as a file:// url",
    ),
    Case(
        "pretrained-folder",
        "32.w3",
        pretrained_folder,
        ConfigError,
        ("config key 'models.variants.authors.pretrained'", "{scratch} is a folder"),
        "give the checkpoint file inside it",
    ),
    Case(
        "truncated-checkpoint",
        "7",
        truncated_checkpoint,
        CorruptFile,
        ("{scratch}/model.pt is truncated or corrupt",),
        "delete it and rerun rule train_model",
    ),
    Case(
        "model-that-runs-code",
        "32.1",
        model_that_runs_code,
        UnsafeFile,
        ("{scratch}/model.pt holds Python objects", "it names io.open"),
        "ask for one saved with tensors only",
    ),
    Case(
        "checkpoint-in-use",
        "8",
        checkpoint_in_use,
        RuntimeError,
        ("{scratch}/checkpoint.pt: another process (pid", "is using this checkpoint"),
        "wait for it to finish, or stop it",
    ),
    Case(
        "xml-error-page",
        "7",
        xml_error_page,
        download.DownloadError,
        ("XML error document (code NoSuchKey, message gone)", "for P01_T2.nii.gz"),
        "fix the dataset's url (or subject list) in the config",
    ),
    Case(
        "xml-error-for-checksum",
        "7",
        xml_error_for_checksum,
        download.DownloadError,
        ("P01_T2.nii.gz.md5 answered HTTP 200 (OK) with an XML error document", "AccessDenied"),
        "fix the dataset's url in the config",
    ),
    Case(
        "persistent-checksum-mismatch",
        "7",
        persistent_md5_mismatch,
        download.DownloadError,
        (
            "{scratch}/P01_T2.nii.gz: MD5 checksum mismatch",
            f"expected {'0' * 32}, got {hashlib.md5(b'a damaged copy').hexdigest()}",
        ),
        "check the checksum in the config or the dataset's published list",
    ),
    Case(
        "lps-header-as-ras",
        "3",
        flipped_header,
        ImplausibleRegistration,
        ("{root}/P01/P01_ceT1.nii.gz", "LPS coordinates written as RAS"),
        "fix: re-convert the flipped file with a RAS-aware converter",
    ),
    Case(
        "flipped-ius-header",
        "32.w1",
        flipped_ius_header,
        ImplausibleRegistration,
        (
            "the header of {root}/P01/P01_US.nii.gz is the likelier to be flipped",
            "(T2, ceT1, FLAIR) agree",
        ),
        "re-convert the flipped file with a RAS-aware converter",
    ),
    Case(
        "implausible-motion",
        "3",
        implausible_motion,
        ImplausibleRegistration,
        ("28.0 degrees", "preprocessing.registration_checks.max_rotation_deg"),
        "fix the header of the wrong file, or raise the limits",
    ),
)


def digests(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root``, by relative path."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """The tiny cohort, made once; each case works on a copy."""
    root = tmp_path_factory.mktemp("pristine") / "cohort"
    make_cohort(root)
    return root


@pytest.fixture
def bench(pristine: Path, tmp_path: Path) -> Iterator[Bench]:
    """A fresh copy of the tiny cohort and an empty scratch folder."""
    import shutil

    root = tmp_path / "cohort"
    shutil.copytree(pristine, root)
    (tmp_path / "scratch").mkdir()
    made = Bench(root, tmp_path / "scratch")
    yield made
    made.close()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_refused_with_file_and_fix(case: Case, bench: Bench) -> None:
    action = case.fault(bench)
    before = digests(bench.root)
    if case.error is None:
        assert action() == case.returns
    else:
        with pytest.raises(case.error) as raised:
            action()
        message = str(raised.value)
        for fragment in case.names:
            expected = fragment.format(root=bench.root, scratch=bench.scratch)
            assert expected in message, f"{expected!r} not in {message!r}"
        assert case.fix in message
        leftovers = [p for p in bench.scratch.iterdir() if not p.name.endswith((".pt", ".lock"))]
        assert not leftovers
    assert digests(bench.root) == before, "the raw files were modified"


def test_every_case_is_documented_with_its_fix() -> None:
    text = TROUBLESHOOTING.read_text()
    sections = dict(re.findall(r"^### `([^`]+)`\n(.*?)(?=^#|\Z)", text, re.MULTILINE | re.DOTALL))
    assert list(sections) == [case.id for case in CASES], "docs/troubleshooting.md out of step"
    for case in CASES:
        words = re.sub(r"^> ?", "", sections[case.id], flags=re.MULTILINE).split()
        assert case.fix in " ".join(words), f"{case.id}: fix not documented"
