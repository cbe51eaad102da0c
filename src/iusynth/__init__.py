"""iusynth: unified MRI <-> intra-operative ultrasound synthesis, end to end.

The package holds all logic of the Snakemake workflow; each module is one concept
(layout, config, demo cohort, QC, and later registration, model, training...).
Importing the package is cheap: heavy dependencies are imported by the modules that
need them.
"""

__version__ = "0.1.0"
