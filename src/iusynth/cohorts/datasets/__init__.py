"""The real datasets: download, verification and conversion to the canonical cohort layout.

- :mod:`~iusynth.cohorts.datasets.download`: HTTP with retries, size/MD5 checks, atomic files,
  safe archive extraction and a per-dataset ledger of verified files.
- :mod:`~iusynth.cohorts.datasets.idc`: IDC's series index (``idc-index-data``, offline) and
  series from IDC's public bucket through ``s5cmd``, checked against the bucket's ETags.
- :mod:`~iusynth.cohorts.datasets.nbia`: the TCIA NBIA v4 REST API and ``.tcia`` manifests.
- :mod:`~iusynth.cohorts.datasets.dicom`: DICOM (MR series, multi-frame iUS, SEG) to NIfTI.
- :mod:`~iusynth.cohorts.datasets.remind`, :mod:`~iusynth.cohorts.datasets.upenn`,
  :mod:`~iusynth.cohorts.datasets.resect`: one module per dataset.
"""
