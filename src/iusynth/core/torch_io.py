"""Reading back the torch files the workflow wrote (checkpoints, models), naming a damaged one.

Apart from :mod:`iusynth.core.fileio` so that the rules whose jobs never touch torch do not
depend on it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from iusynth.core.fileio import CorruptFile


def load_torch(
    path: str | os.PathLike[str],
    producer: str,
    *,
    map_location: Any = "cpu",
    weights_only: bool = False,
) -> Any:
    """``torch.load`` of a file the workflow wrote, with an error naming it and the fix.

    ``producer`` names the rule that writes the file (e.g. ``"rule train_model"``): a
    truncated or damaged file (an interrupted copy, a full disk) is reported as
    :class:`CorruptFile` saying to delete it and rerun that rule.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run {producer}, which writes it")
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as error:  # torch raises many types for damaged files
        raise CorruptFile(
            f"{path} is truncated or corrupt ({type(error).__name__}: {error}); delete it "
            f"and rerun {producer}, which writes it again"
        ) from None
