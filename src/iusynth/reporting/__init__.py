"""Reports a reviewer can open: a page per subject, an index, methods text and provenance.

- :mod:`iusynth.reporting.provenance`: ``results/provenance.json``, what produced the run
  (commit, config files, package versions, data ledgers, model checkpoints, machine, wall
  times);
- :mod:`iusynth.reporting.subject_page`: one self-contained HTML page per subject
  (figures inlined as PNG), in the order the data flows through the workflow;
- :mod:`iusynth.reporting.index_page`: ``results/reports/index.html``, a sortable row per
  subject and the workflow's tables beside the paper's;
- :mod:`iusynth.reporting.methods`: the methods text (Markdown and LaTeX) and its BibTeX,
  written from the run's config and versions.

Every page is rendered from the Jinja2 templates under ``templates/``.
"""
