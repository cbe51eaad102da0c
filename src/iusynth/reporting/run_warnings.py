"""Warnings a subject's jobs wrote to their logs, and the checks a report makes itself.

The package's stages log with ``<date> <time> <logger> <LEVEL> <message>``; Python's
``warnings`` module prints ``<file>:<line>: <Category>Warning: <message>``. Both are
collected from every log of a subject's jobs, each message once with its count.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_LOGGED = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<logger>\S+) (?P<level>WARNING|ERROR|CRITICAL) "
    r"(?P<message>.*)$"
)
_PYTHON_WARNING = re.compile(r"^(?P<where>\S.*?):\d+: (?P<level>\w*Warning): (?P<message>.*)$")
_MAX_MESSAGE = 400


@dataclass(frozen=True)
class RunWarning:
    """One distinct warning message of one job's log."""

    rule: str
    log: str
    level: str
    message: str
    count: int


def scan_log(path: Path) -> list[tuple[str, str]]:
    """(level, message) of every warning or error line of a log, in order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"log {path} does not exist: the job that writes it has not run; re-run the workflow"
        )
    found = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.rstrip()
        match = _LOGGED.match(line) or _PYTHON_WARNING.match(line)
        if match:
            message = match["message"].strip()
            if len(message) > _MAX_MESSAGE:
                message = message[: _MAX_MESSAGE - 1] + "…"
            found.append((match["level"], message))
    return found


def collect_warnings(logs: dict[str, list[Path]]) -> list[RunWarning]:
    """Distinct warnings of every log, per rule (in the order the rules are given)."""
    collected = []
    for rule, paths in logs.items():
        for path in paths:
            counts = Counter(scan_log(path))
            for (level, message), count in counts.items():
                collected.append(RunWarning(rule, str(path), level, message, count))
    return collected


@dataclass(frozen=True)
class Check:
    """A finding of a report page's own checks, shown with the run's warnings."""

    section: str
    message: str
