"""iusynth: unified MRI <-> intra-operative ultrasound synthesis, end to end.

The package holds all logic of the Snakemake workflow; each module is one concept
(layout, config, demo cohort, QC, and later registration, model, training...).
Importing the package is cheap: heavy dependencies are imported by the modules that
need them.
"""

from iusynth.core.threads import wait_passively

__version__ = "0.1.0"

# OpenMP reads its wait policy when torch first loads: set it before any of our modules
# import torch (iusynth.core.threads)
wait_passively()
