"""ITK transform files (``.tfm``, ``.txt``, ``.h5``) as the workflow's 4x4 world maps.

Two conventions meet here, and both are handled in this module alone:

- **LPS and RAS.** ITK acts on physical points in LPS millimetres (DICOM's patient frame);
  the workflow's world is NIfTI's RAS. A map ``M`` on LPS points is the map
  ``F @ M @ F`` on RAS points, with ``F = diag(-1, -1, 1, 1)``.
- **Which way a file maps.** A transform file ``A-to-B`` as ITK-based registration writes
  it (moving image A, fixed image B: 3D Slicer, ANTs, elastix, and the MMHVAE authors'
  ReMIND files) resamples A onto B's grid, so it maps B's physical points to A's.
  :func:`read_itk_affine` returns exactly the point map the file holds; the callers say
  which direction they need (:mod:`iusynth.preprocessing.given_transforms`).

Any ITK transform that is an affine map (translation, Euler, versor, similarity, affine,
matrix-offset, or a composite of these) is read; a deformable one is refused, naming the
file. SimpleITK reads and writes the files, so every format it knows is accepted.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse
AFFINE_TOLERANCE_MM = 1e-6  # residual of the affine fit beyond which a map is not affine
_PROBE_EXTENT_MM = 100.0  # the probe points span a head-sized cube


def lps_to_ras(matrix_lps: np.ndarray) -> np.ndarray:
    """A 4x4 map of LPS points as the same map of RAS points (and back)."""
    return LPS_RAS @ np.asarray(matrix_lps, dtype=float) @ LPS_RAS


def _affine_fit(transform: object, path: Path) -> np.ndarray:
    """The 4x4 LPS matrix of an ITK transform, fitted on probe points and checked affine."""
    rng = np.random.default_rng(0)
    probes = np.vstack(
        [np.zeros(3), np.eye(3) * _PROBE_EXTENT_MM, rng.uniform(-1, 1, (12, 3)) * _PROBE_EXTENT_MM]
    )
    try:
        mapped = np.array([transform.TransformPoint(tuple(map(float, p))) for p in probes])
    except RuntimeError as error:
        raise ValueError(f"ITK transform {path} cannot map a point ({error})") from error
    homogeneous = np.hstack([probes, np.ones((len(probes), 1))])
    solution, *_ = np.linalg.lstsq(homogeneous, mapped, rcond=None)
    matrix = np.eye(4)
    matrix[:3, :] = solution.T
    residual = np.abs(homogeneous @ solution - mapped).max()
    if not np.isfinite(matrix).all() or residual > AFFINE_TOLERANCE_MM:
        raise ValueError(
            f"ITK transform {path} is not an affine map (residual {residual:.3g} mm on probe "
            "points): export the affine (linear) part of the registration instead"
        )
    if abs(np.linalg.det(matrix[:3, :3])) < 1e-6:
        raise ValueError(f"ITK transform {path} is singular (it collapses space): re-export it")
    return matrix


def read_itk_affine(path: str | os.PathLike[str]) -> np.ndarray:
    """The point map an ITK transform file holds, as a 4x4 matrix on RAS world millimetres.

    Raises ValueError naming the file when it is missing, unreadable or not affine.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ITK transform file {path} does not exist")
    try:
        transform = sitk.ReadTransform(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else ""
        raise ValueError(
            f"ITK transform file {path} is unreadable ({first_line}): expected an ITK "
            "transform (.tfm / .txt text, or .h5) as 3D Slicer, ANTs or SimpleITK write it"
        ) from error
    if transform.GetDimension() != 3:
        raise ValueError(f"ITK transform {path} is {transform.GetDimension()}D, not 3D")
    if not transform.IsLinear():
        raise ValueError(
            f"ITK transform {path} is not an affine map ({transform.GetName()}): a deformable "
            "transform cannot be used as a given registration; export the affine (linear) "
            "part of the registration instead"
        )
    return lps_to_ras(_affine_fit(transform, path))


def write_itk_affine(path: str | os.PathLike[str], matrix_ras: np.ndarray) -> None:
    """Write a 4x4 map of RAS points as an ITK ``AffineTransform_double_3_3`` (LPS), atomically."""
    import SimpleITK as sitk

    from iusynth.core.fileio import atomic_path

    lps = lps_to_ras(matrix_ras)
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(tuple(float(v) for v in lps[:3, :3].ravel()))
    transform.SetTranslation(tuple(float(v) for v in lps[:3, 3]))
    with atomic_path(Path(path)) as tmp:  # the temporary keeps the suffix SimpleITK reads
        sitk.WriteTransform(transform, str(tmp))
