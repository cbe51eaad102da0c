"""One self-contained HTML page per subject, in the order the data flows through the workflow.

Sections, each present only where the subject takes part, one module each:

1. :mod:`~iusynth.reporting.subject_page.inputs`: every modality the subject has (the QC
   figure of ``plot_subject_qc``), its grid, the tumour labels and landmarks, and what the
   cohort's role expects but the subject lacks;
2. :mod:`~iusynth.reporting.subject_page.registration` (paired subjects): the iUS -> MR
   transform (rotation, displacement of the field of view's centre) and the MR -> MR
   alignments, landmark errors before and after, checkerboards (``plot_registration_qc``)
   and edge overlays;
3. :mod:`~iusynth.reporting.subject_page.synthesis` (evaluation subjects): acquired vs
   each method's synthesis per direction and the temperature sweep (the figure code of
   :mod:`iusynth.reporting.figures`), with the subject's PSNR, SSIM and LPIPS;
4. :mod:`~iusynth.reporting.subject_page.downstream`: nnU-Net segmentation of the real iUS
   against its label (Dice, ASSD), the registration experiment's TRE per displacement bin,
   or (MR-only subjects) the virtual sweep and the synthetic iUS on its planes;
5. warnings: what the subject's jobs logged, and the checks this page makes
   (:mod:`iusynth.reporting.run_warnings`).

The workflow passes every file a page reads (see ``workflow/rules/reports.smk``) as one
JSON mapping (:mod:`~iusynth.reporting.subject_page.files`); a page reads nothing else.
:mod:`~iusynth.reporting.subject_page.page` assembles the sections, writes the page and
the summary the index lists.
"""
