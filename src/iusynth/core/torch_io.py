"""Reading back torch files (checkpoints, models) safely, naming a damaged or unsafe one.

Every file is read with ``weights_only=True``: only tensors, numbers, strings, containers
(and, where asked, NumPy scalars) are unpickled, so a ``model.pt`` or checkpoint from
someone else cannot run code when it is loaded. The workflow's own files hold nothing else.

Apart from :mod:`iusynth.core.fileio` so that the rules whose jobs never touch torch do not
depend on it.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

from iusynth.core.fileio import CorruptFile, set_aside


class UnsafeFile(ValueError):
    """A torch file holding Python objects that a weights-only load refuses."""


def numpy_scalar_globals() -> list[Any]:
    """What a pickled NumPy scalar is rebuilt from (nnU-Net's logs hold such scalars).

    The scalar reconstructor, ``np.dtype`` and the classes of the boolean and numeric
    dtypes: data only, no object dtype.
    """
    import numpy as np

    numeric = [type(np.dtype(code)) for code in "?bhilqBHILQefdgFDG"]
    return [np.dtype, np._core.multiarray.scalar, *numeric]


def _refused_global(error: Exception) -> str | None:
    """The Python object a weights-only load refused (e.g. ``posix.system``), if it did."""
    if not isinstance(error, pickle.UnpicklingError):
        return None
    found = re.search(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>", str(error))
    return next(name for name in found.groups() if name) if found else None


def load_torch(
    path: str | os.PathLike[str],
    producer: str,
    *,
    map_location: Any = "cpu",
    numpy_scalars: bool = False,
) -> Any:
    """``torch.load(weights_only=True)`` of a torch file, with errors naming it and the fix.

    ``producer`` names the rule that writes the file (e.g. ``"rule train_model"``). A
    truncated or damaged file (an interrupted copy, a full disk) is reported as
    :class:`CorruptFile`, one holding other Python objects (which could run code when
    unpickled) as :class:`UnsafeFile`; both say to delete it and rerun that rule.
    ``numpy_scalars`` also admits NumPy scalars (nnU-Net's checkpoints).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run {producer}, which writes it")
    allowed = numpy_scalar_globals() if numpy_scalars else []
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for damaged files
        refused = _refused_global(error)
        if refused:
            raise UnsafeFile(
                f"{path} holds Python objects other than tensors, numbers, strings and "
                f"containers (it names {refused}); they are not unpickled, as loading such "
                "a file can run arbitrary code. The workflow's own files never hold them: if "
                "this one came from elsewhere, ask for one saved with tensors only (e.g. "
                f"torch.save of a state_dict); else delete it and rerun {producer}"
            ) from None
        raise CorruptFile(
            f"{path} is truncated or corrupt ({type(error).__name__}: {error}); delete it "
            f"and rerun {producer}, which writes it again"
        ) from None


def load_checkpoint_or_set_aside(
    path: Path, producer: str, *, map_location: Any = "cpu", numpy_scalars: bool = False
) -> Any | None:
    """:func:`load_torch` of a checkpoint to resume, or None when it cannot be resumed.

    A truncated file, or one holding objects that could run code, is set aside
    (``<name>.stale-unreadable`` or ``.stale-unsafe``, with a warning) so that training
    starts afresh.
    """
    try:
        return load_torch(path, producer, map_location=map_location, numpy_scalars=numpy_scalars)
    except (CorruptFile, UnsafeFile) as error:  # killed mid-save, foreign or hostile
        label = "unsafe" if isinstance(error, UnsafeFile) else "unreadable"
        set_aside(path, label, f"is not a readable checkpoint ({error})")
        return None
