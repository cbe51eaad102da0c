"""What the report jobs read of the config, as settings (see :mod:`iusynth.core.settings`).

:class:`ReportSettings` is the ``reports`` section; a subject page's :class:`PageSettings`
add its cohort's role and the experiments it may take part in; the methods text's
:class:`MethodsSettings` gather the settings of the jobs it describes, each built as that
job gets it (:mod:`iusynth.jobs`).
"""

from __future__ import annotations

from dataclasses import dataclass

from iusynth.cohorts.demo.settings import DemoSettings
from iusynth.core.directions import Direction
from iusynth.evaluation.settings import MetricSettings, TableSettings
from iusynth.experiments.registration_tre.settings import ExperimentSettings
from iusynth.experiments.segmentation.settings import (
    NnunetSettings,
    SyntheticIusSettings,
    VirtualSweepSettings,
)
from iusynth.model.config import ModelConfig
from iusynth.preprocessing.settings import (
    PreprocessingSettings,
    RegistrationSettings,
    SplitSettings,
)
from iusynth.synthesis.settings import SweepSettings
from iusynth.training.settings import TrainingConfig, TranslatorTraining


@dataclass(frozen=True)
class ReportSettings:
    """The subject pages' checks and figures (``reports``)."""

    weak_registration_mm: float  # a median landmark error after registration above it: flagged
    figure_dpi: int
    figure_slices: int  # slices per synthesis, segmentation or sweep figure
    max_page_mb: float  # a larger page stops its job


@dataclass(frozen=True)
class PageSettings:
    """What the page of a subject of ``cohort`` reads: its role, the methods, ``reports``."""

    cohort: str
    source: str  # cohorts.<cohort>.source: demo, dataset or local
    dataset: str | None  # cohorts.<cohort>.dataset: what it is, simulates or follows
    trainval_cohort: str  # preprocessing.trainval_cohort
    test_cohort: str  # preprocessing.test_cohort
    segmentation_cohort: str  # segmentation.cohort
    fold: int  # models.fold: the primary fold (the downstream experiments' models)
    folds: tuple[int, ...]  # the trained folds (all of them with cross-validation)
    directions: tuple[Direction, ...]  # evaluation.directions
    table_temperature: float  # evaluation.table_temperature
    method_labels: dict[str, str]  # evaluation.table2, then table1: method -> label
    figure_methods: tuple[str, ...]  # Table 1's methods and the first sweep method
    sweep_method: str  # the first of evaluation.sweep_methods
    segmentation_methods: dict[str, str]  # segmentation.methods: method -> label
    reports: ReportSettings

    def label(self, method: str) -> str:
        """A method's display name (the tables' label, else its name)."""
        return self.method_labels.get(method, method)


@dataclass(frozen=True)
class MethodsSettings:
    """What the methods text states of the run, from the settings of the jobs it describes."""

    demo: DemoSettings
    remind_api: str  # the api of the cohort of dataset remind: where its series come from
    trainval_cohort: str
    test_cohort: str
    segmentation_cohort: str
    registration: RegistrationSettings
    preprocessing: PreprocessingSettings
    transforms: dict[str, str]  # paired cohort -> where its registrations come from
    trainval_test_subjects: int  # segmentation.trainval_test_subjects
    splits: SplitSettings
    fold: int  # models.fold: the primary fold
    folds: tuple[int, ...]  # the trained folds
    architecture: ModelConfig  # models.architecture, before the variants' overrides
    training: TrainingConfig  # models.training, before the variants' overrides
    variants: tuple[str, ...]  # every models.variants entry
    pretrained_variants: tuple[str, ...]  # those loading the authors' checkpoint
    baselines: TranslatorTraining
    # each GAN baseline's methods-text words (TranslatorMethod.description), by name
    baseline_descriptions: dict[str, str]
    tables: TableSettings
    sweep: SweepSettings  # of the first of evaluation.sweep_methods
    sweep_methods: tuple[str, ...]
    metrics: MetricSettings
    lpips: bool  # whether LPIPS is computed (evaluation.lpips_weights)
    experiment: ExperimentSettings
    experiment_model: str  # registration_experiment.model
    virtual_sweep: VirtualSweepSettings
    synthetic_ius: SyntheticIusSettings
    segmenter: NnunetSettings
    segmentation_methods: dict[str, str]  # segmentation.methods: method -> label
