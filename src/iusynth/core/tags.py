"""MNI tag point files (``.tag``): paired landmarks in world millimetres.

A tag file with two volumes holds rows ``x1 y1 z1 x2 y2 z2 "label"``: the first triple
in the first volume (MR), the second in the second (ultrasound), both as RAS world
coordinates. ITK and SimpleITK use LPS; :func:`ras_to_lps` converts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iusynth.core.fileio import atomic_path

_HEADER = "MNI Tag Point File"
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_ROW = re.compile(
    rf"^\s*({_NUMBER})\s+({_NUMBER})\s+({_NUMBER})\s+({_NUMBER})\s+({_NUMBER})\s+({_NUMBER})"
    r'(?:\s+"([^"]*)")?\s*;?\s*$'
)


@dataclass(frozen=True)
class LandmarkPairs:
    """Paired landmarks: row i of ``first`` (MR) corresponds to row i of ``second`` (US)."""

    first: np.ndarray
    second: np.ndarray
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.first.shape != self.second.shape or self.first.ndim != 2:
            raise ValueError("landmark arrays must both be N x 3")
        if self.first.shape[1] != 3 or len(self.labels) != self.first.shape[0]:
            raise ValueError("landmark arrays must be N x 3 with N labels")


def write_tag_file(path: str | os.PathLike[str], pairs: LandmarkPairs, comment: str = "") -> None:
    """Write paired landmarks (RAS mm) as an MNI tag file, atomically."""
    lines = [_HEADER, "Volumes = 2;"]
    lines += [f"% {text}" for text in comment.splitlines() if text]
    lines += ["", "Points ="]
    for index, (a, b, label) in enumerate(
        zip(pairs.first, pairs.second, pairs.labels, strict=True)
    ):
        end = ";" if index == len(pairs.labels) - 1 else ""
        coords = " ".join(f"{value:.4f}" for value in (*a, *b))
        lines.append(f' {coords} "{label}"{end}')
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def read_tag_file(path: str | os.PathLike[str]) -> LandmarkPairs:
    """Parse an MNI tag file with two volumes into RAS landmark pairs."""
    path = Path(path)
    text = path.read_text(errors="replace")
    lines = [line.split("%", 1)[0].rstrip() for line in text.splitlines()]
    if not lines or lines[0].strip() != _HEADER:
        raise ValueError(f"{path} is not an MNI tag file (first line must be {_HEADER!r})")
    volumes = re.search(r"Volumes\s*=\s*(\d+)\s*;", text)
    if not volumes or int(volumes.group(1)) != 2:
        raise ValueError(f"{path}: expected 'Volumes = 2;' (paired landmarks)")
    try:
        start = next(i for i, line in enumerate(lines) if line.strip().startswith("Points"))
    except StopIteration:
        raise ValueError(f"{path}: no 'Points =' section") from None
    first, second, labels = [], [], []
    body = [lines[start].split("=", 1)[1], *lines[start + 1 :]]
    for offset, line in enumerate(body):
        if not line.strip() or line.strip() == ";":
            continue
        match = _ROW.match(line)
        if not match:
            raise ValueError(f"{path}: line {start + 1 + offset}: cannot parse {line.strip()!r}")
        values = [float(v) for v in match.groups()[:6]]
        first.append(values[:3])
        second.append(values[3:])
        labels.append(match.group(7) or f"L{len(labels) + 1}")
    if not first:
        raise ValueError(f"{path}: the file holds no landmark pairs")
    return LandmarkPairs(np.array(first), np.array(second), tuple(labels))


def ras_to_lps(points: np.ndarray) -> np.ndarray:
    """Convert N x 3 world points between RAS and LPS (the map is its own inverse)."""
    return np.asarray(points, dtype=float) * np.array([-1.0, -1.0, 1.0])
