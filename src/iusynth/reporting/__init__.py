"""What a run shows: its tables, figures, timing, provenance and pages a reviewer opens.

- :mod:`iusynth.reporting.tables`, :mod:`~iusynth.reporting.figures`: the results tables
  (ours beside the paper's) and the synthesis figures;
- :mod:`iusynth.reporting.benchmarking`: every rule's wall time from Snakemake's
  benchmark files;
- :mod:`iusynth.reporting.provenance`: ``results/provenance.json``, what produced the run
  (commit, config files, package versions, data ledgers, model checkpoints, machine, wall
  times);
- :mod:`iusynth.reporting.subject_page`: one self-contained HTML page per subject
  (figures inlined as PNG), in the order the data flows through the workflow;
- :mod:`iusynth.reporting.index_page`: ``results/reports/index.html``, a sortable row per
  subject and the workflow's tables beside the paper's;
- :mod:`iusynth.reporting.methods`: the methods text (Markdown and LaTeX) and its BibTeX,
  written from the run's config and versions.

Every page is rendered from the Jinja2 templates under ``templates/``. The paper's own
numbers ship in one file, :data:`PAPER_RESULTS_FILE`; nothing else types a published
number in.
"""

from pathlib import Path

PAPER_RESULTS_FILE = Path(__file__).resolve().parent / "data" / "paper_results.csv"
