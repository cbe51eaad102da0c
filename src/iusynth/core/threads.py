"""How this package's processes wait for their CPU threads: passively.

Torch's CPU operators run on an OpenMP thread pool whose threads, by default, spin
between parallel regions. On a machine with other work (several Snakemake jobs, a shared
cluster node, a laptop) a spinning thread holds a core that another process needs, and a
descheduled one stalls every barrier of the next operator. Waiting passively (the
threads sleep) costs little on a quiet machine and saves most of that loss on a busy
one: ``benchmarks/contention.md`` measures both, side by side with the authors' code.

The policy is read once, when the OpenMP runtime loads (the first ``import torch``), so
:func:`wait_passively` runs when ``iusynth`` is imported: before torch in the workflow's
jobs (``python -m iusynth``) and in any script that imports ``iusynth`` first. A value the
user set (``OMP_WAIT_POLICY``) is kept.
"""

from __future__ import annotations

import os
import sys

WAIT_POLICY = "OMP_WAIT_POLICY"
PASSIVE = "PASSIVE"


def wait_passively() -> bool:
    """Ask OpenMP's threads to sleep while they wait, unless told otherwise.

    Returns whether the setting can still take effect (torch not yet imported).
    """
    os.environ.setdefault(WAIT_POLICY, PASSIVE)
    return "torch" not in sys.modules
