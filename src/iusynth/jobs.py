"""What each job of the workflow reads of the configuration, as typed settings.

One function per kind of job builds its settings object from the (validated) config with
:func:`iusynth.core.settings.build`; the rules pass :func:`iusynth.core.settings.to_json`
of it as the job's ``--settings``. A job's params are therefore exactly what it reads:
renaming a table row or changing the bootstrap count reruns the tables alone, while
``preprocessing.slice_size`` reaches the model (its ``image_size``) and reruns training
and everything after it. No torch is imported here: the Snakefile imports this module.
:data:`BINDINGS` lists every builder with its class and config section (the test of the
schema reads it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from iusynth.cohorts.datasets.download import RetryPolicy
from iusynth.cohorts.demo.settings import DemoCohortSettings, DemoSettings
from iusynth.cohorts.registry import demo_cohort_settings, transforms_of
from iusynth.core.config import validate_config
from iusynth.core.directions import Direction
from iusynth.core.settings import ConfigError, build, merged
from iusynth.core.splits import fold_count, split_source, trained_folds
from iusynth.evaluation.settings import (
    LPIPS_WEIGHTS_FILE,
    FigureSettings,
    MetricSettings,
    TableSettings,
)
from iusynth.experiments.registration_tre.settings import ExperimentSettings, MrSynthesisSettings
from iusynth.experiments.segmentation.settings import (
    NETWORK_SETTINGS,
    SegmentationTableSettings,
    SyntheticIusSettings,
    VirtualSweepSettings,
)
from iusynth.methods import TRANSLATORS, translator_method
from iusynth.model.config import ModelConfig, TranslatorConfig
from iusynth.preprocessing.settings import (
    PreprocessingSettings,
    RegistrationSettings,
    SplitSettings,
)
from iusynth.reporting.settings import MethodsSettings, PageSettings, ReportSettings
from iusynth.synthesis.settings import SweepSettings
from iusynth.training.settings import (
    BaselineSettings,
    PretrainedSettings,
    TrainingConfig,
    TranslatorTraining,
    VariantSettings,
)

Config = Mapping[str, Any]


def section(config: Config, key: str) -> Mapping[str, Any]:
    """The config section at a dotted key."""
    value: Any = config
    for part in key.split("."):
        value = value[part]
    return value


def demo(config: Config) -> DemoSettings:
    """The simulator's settings (``demo``)."""
    return build(DemoSettings, config["demo"], "demo")


def demo_cohort(config: Config, name: str) -> DemoCohortSettings:
    """The size and variety of one generated cohort (``demo.cohorts.<name>``)."""
    return demo_cohort_settings(config["demo"], name)


def download(config: Config) -> RetryPolicy:
    """How hard downloads try (``download``)."""
    return build(RetryPolicy, config["download"], "download")


def registration(config: Config, threads: int = 1) -> RegistrationSettings:
    """MR -> MR and iUS -> MR registration (``preprocessing``)."""
    return build(RegistrationSettings, config["preprocessing"], "preprocessing", threads=threads)


def preprocessing(config: Config) -> PreprocessingSettings:
    """Resampling and normalisation (``preprocessing``)."""
    return build(PreprocessingSettings, config["preprocessing"], "preprocessing")


def splits(config: Config) -> SplitSettings:
    """The folds (``preprocessing.splits``, its source resolved)."""
    return build(
        SplitSettings,
        config["preprocessing"]["splits"],
        "preprocessing.splits",
        source=split_source(config),
    )


def direction_names(config: Config) -> list[str]:
    """The evaluated directions' names (``T2-to-US``) from ``evaluation.directions``."""
    return [Direction(**direction).name for direction in config["evaluation"]["directions"]]


def _slice_side(config: Config) -> int:
    return int(config["preprocessing"]["slice_size"][0])


def _variant(config: Config, variant: str) -> Mapping[str, Any]:
    variants = config["models"]["variants"]
    if variant not in variants:
        raise KeyError(f"models.variants has no {variant!r}; known: {sorted(variants)}")
    return variants[variant] or {}


def model(config: Config, variant: str) -> ModelConfig:
    """A variant's architecture: ``models.architecture`` with its overrides."""
    values = merged(config["models"]["architecture"], _variant(config, variant).get("architecture"))
    key = f"models.variants.{variant}.architecture"
    return build(ModelConfig, values, key, image_size=_slice_side(config))


def training(config: Config, variant: str) -> TrainingConfig:
    """A variant's training: ``models.training`` with its overrides."""
    values = merged(config["models"]["training"], _variant(config, variant).get("training"))
    return build(TrainingConfig, values, f"models.variants.{variant}.training")


def translator(
    config: Config, kind: str, inputs: tuple[str, ...], targets: tuple[str, ...]
) -> TranslatorConfig:
    """A GAN baseline's network: ``baselines.architecture``, ``baselines.generators.<kind>``."""
    image_size = _slice_side(config)
    generator = translator_method(kind).generator_settings(
        config["baselines"].get("generators", {}).get(kind, {}),
        f"baselines.generators.{kind}",
        image_size,
    )
    return build(
        TranslatorConfig,
        config["baselines"]["architecture"],
        "baselines.architecture",
        kind=kind,
        inputs=inputs,
        targets=targets,
        image_size=image_size,
        generator=generator,
    )


def check_generators(config: Config) -> None:
    """Every ``baselines.generators`` entry names a registered GAN baseline."""
    for name in config["baselines"].get("generators", {}):
        if name not in TRANSLATORS:
            raise ConfigError(
                f"config key 'baselines.generators.{name}': {name!r} is not a GAN baseline "
                f"(the registered ones: {list(TRANSLATORS)})"
            )


def translator_training(config: Config) -> TranslatorTraining:
    """The GAN baselines' training (``baselines.training``)."""
    return build(TranslatorTraining, config["baselines"]["training"], "baselines.training")


def sweep(config: Config, method: str) -> SweepSettings:
    """What one method synthesises per evaluation subject (``evaluation``)."""
    section_ = config["evaluation"]
    temperatures = (
        section_["temperatures"]
        if method in section_["sweep_methods"]
        else sorted({0.0, section_["table_temperature"]})  # 0: the skill's deterministic one
    )
    return build(SweepSettings, section_, "evaluation", temperatures=temperatures)


def metrics(config: Config) -> MetricSettings:
    """How synthesis is scored (``evaluation``)."""
    return build(MetricSettings, config["evaluation"], "evaluation")


def tables(config: Config) -> TableSettings:
    """Tables 1 and 2 (``evaluation``), and which folds' models scored them."""
    return build(
        TableSettings,
        config["evaluation"],
        "evaluation",
        split=split_source(config),
        fold_count=fold_count(config),
        folds=trained_folds(config),
        primary_fold=config["models"]["fold"],
    )


def figures(config: Config) -> FigureSettings:
    """The synthesis figures (``evaluation``)."""
    return build(FigureSettings, config["evaluation"], "evaluation")


def registration_experiment(config: Config, threads: int = 1) -> ExperimentSettings:
    """The registration experiment (``registration_experiment.experiment``)."""
    key = "registration_experiment.experiment"
    return build(ExperimentSettings, section(config, key), key, threads=threads)


def mr_synthesis(config: Config) -> MrSynthesisSettings:
    """The MR synthesised from iUS for the registration experiment."""
    experiment = config["registration_experiment"]["experiment"]
    return build(
        MrSynthesisSettings,
        config["registration_experiment"],
        "registration_experiment",
        sequences=experiment["sequences"],
        temperature=experiment["temperature"],
    )


def virtual_sweep(config: Config) -> VirtualSweepSettings:
    """The virtual sweeps (``segmentation.sweeps``), planes like the training slices."""
    preprocessing_ = config["preprocessing"]
    return build(
        VirtualSweepSettings,
        config["segmentation"]["sweeps"],
        "segmentation.sweeps",
        size=preprocessing_["slice_size"],
        spacing_mm=preprocessing_["spacing_mm"],
        clip_percentile=preprocessing_["clip_percentile"],
        normalisation_region=preprocessing_["normalisation_region"],
    )


def synthetic_ius(config: Config) -> SyntheticIusSettings:
    """Synthetic iUS on the sweep planes (``segmentation``)."""
    return build(SyntheticIusSettings, config["segmentation"], "segmentation")


def segmenter(config: Config, threads: int = 1) -> Any:
    """The settings of the configured segmentation network (``segmentation.network``)."""
    network = config["segmentation"]["network"]
    key = f"segmentation.{network}"
    return build(NETWORK_SETTINGS[network], section(config, key), key, threads=threads)


def segmentation_tables(config: Config) -> SegmentationTableSettings:
    """Table 4 (``segmentation``)."""
    return build(SegmentationTableSettings, config["segmentation"], "segmentation")


def reports(config: Config) -> ReportSettings:
    """The subject pages' checks and figures (``reports``)."""
    return build(ReportSettings, config["reports"], "reports")


def subject_page(config: Config, cohort: str) -> PageSettings:
    """What the page of a subject of ``cohort`` reads (``reports`` and the experiments)."""
    evaluation = config["evaluation"]
    sweep_method = evaluation["sweep_methods"][0]
    return PageSettings(
        cohort=cohort,
        source=config["cohorts"][cohort]["source"],
        dataset=config["cohorts"][cohort].get("dataset"),
        trainval_cohort=config["preprocessing"]["trainval_cohort"],
        test_cohort=config["preprocessing"]["test_cohort"],
        segmentation_cohort=config["segmentation"]["cohort"],
        fold=config["models"]["fold"],
        folds=trained_folds(config),
        directions=tables(config).directions,
        table_temperature=float(evaluation["table_temperature"]),
        method_labels={**evaluation["table2"], **evaluation["table1"]},
        figure_methods=tuple(dict.fromkeys([*evaluation["table1"], sweep_method])),
        sweep_method=sweep_method,
        segmentation_methods=dict(config["segmentation"]["methods"]),
        reports=reports(config),
    )


def _remind_api(config: Config) -> str:
    """Where ReMIND's series come from: the api of the cohort of dataset remind."""
    rows = config["cohorts"].values()
    return next((r.get("api", "idc") for r in rows if r.get("dataset") == "remind"), "idc")


def baseline_descriptions(config: Config) -> dict[str, str]:
    """Each GAN baseline's methods-text words for its networks' settings, by name."""
    fold, directions = config["models"]["fold"], direction_names(config)
    return {
        name: method.description(
            baseline(config, name, method.networks(directions)[0], fold).translator
        )
        for name, method in TRANSLATORS.items()
    }


def methods(config: Config) -> MethodsSettings:
    """What the methods text states: the settings of each job it describes."""
    models = config["models"]
    variants = tuple(models["variants"])
    return MethodsSettings(
        demo=demo(config),
        remind_api=next(
            (
                row.get("api", "idc")
                for row in config["cohorts"].values()
                if row.get("dataset") == "remind"
            ),
            "idc",
        ),
        trainval_cohort=config["preprocessing"]["trainval_cohort"],
        test_cohort=config["preprocessing"]["test_cohort"],
        segmentation_cohort=config["segmentation"]["cohort"],
        registration=registration(config),
        preprocessing=preprocessing(config),
        transforms={
            name: transforms_of(name, config["cohorts"][name])
            for name in dict.fromkeys(
                [config["preprocessing"]["trainval_cohort"], config["preprocessing"]["test_cohort"]]
            )
            if name in config["cohorts"]  # an unknown name is reported by the cohorts' checks
        },
        splits=splits(config),
        trainval_test_subjects=config["segmentation"]["trainval_test_subjects"],
        fold=models["fold"],
        folds=trained_folds(config),
        architecture=build(
            ModelConfig,
            models["architecture"],
            "models.architecture",
            image_size=_slice_side(config),
        ),
        training=build(TrainingConfig, models["training"], "models.training"),
        variants=variants,
        pretrained_variants=tuple(v for v in variants if pretrained(config, v) is not None),
        baselines=translator_training(config),
        baseline_descriptions=baseline_descriptions(config),
        tables=tables(config),
        sweep=sweep(config, config["evaluation"]["sweep_methods"][0]),
        sweep_methods=tuple(config["evaluation"]["sweep_methods"]),
        metrics=metrics(config),
        lpips=bool(config["evaluation"]["lpips_weights"]),
        experiment=registration_experiment(config),
        experiment_model=config["registration_experiment"]["model"],
        virtual_sweep=virtual_sweep(config),
        synthetic_ius=synthetic_ius(config),
        segmenter=segmenter(config),
        segmentation_methods=dict(config["segmentation"]["methods"]),
    )


@dataclass(frozen=True)
class Binding:
    """A builder, the settings class it makes and the config section it reads."""

    build: Callable[..., Any]
    settings: type
    section: str


BINDINGS = (
    Binding(demo, DemoSettings, "demo"),
    Binding(demo_cohort, DemoCohortSettings, "demo.cohorts.*"),
    Binding(download, RetryPolicy, "download"),
    Binding(registration, RegistrationSettings, "preprocessing"),
    Binding(preprocessing, PreprocessingSettings, "preprocessing"),
    Binding(splits, SplitSettings, "preprocessing.splits"),
    Binding(model, ModelConfig, "models.architecture"),
    Binding(training, TrainingConfig, "models.training"),
    Binding(translator, TranslatorConfig, "baselines.architecture"),
    Binding(translator_training, TranslatorTraining, "baselines.training"),
    Binding(sweep, SweepSettings, "evaluation"),
    Binding(metrics, MetricSettings, "evaluation"),
    Binding(tables, TableSettings, "evaluation"),
    Binding(figures, FigureSettings, "evaluation"),
    Binding(registration_experiment, ExperimentSettings, "registration_experiment.experiment"),
    Binding(mr_synthesis, MrSynthesisSettings, "registration_experiment"),
    Binding(virtual_sweep, VirtualSweepSettings, "segmentation.sweeps"),
    Binding(synthetic_ius, SyntheticIusSettings, "segmentation"),
    *(Binding(segmenter, cls, f"segmentation.{name}") for name, cls in NETWORK_SETTINGS.items()),
    Binding(segmentation_tables, SegmentationTableSettings, "segmentation"),
    Binding(reports, ReportSettings, "reports"),
)


def check_folds(config: Config) -> None:
    """``models.fold`` is a fold of the split, whichever source it has."""
    fold, folds = config["models"]["fold"], fold_count(config)
    if fold >= folds:
        where = (
            "the authors' ReMIND split"
            if split_source(config) == "authors"
            else "preprocessing.splits.folds"
        )
        raise ConfigError(
            f"config key 'models.fold': {fold} is not a fold of {where} ({folds} folds); "
            f"expected 0 to {folds - 1} (folds count from 0): lower models.fold"
            + ("" if split_source(config) == "authors" else " or raise preprocessing.splits.folds")
        )


def check_all(config: Config) -> None:
    """Build every job's settings once, so that a bad value stops the run before any job.

    Raises :class:`iusynth.core.settings.ConfigError` naming the key.
    """
    check_folds(config)
    check_generators(config)
    for builder in (demo, download, registration, preprocessing, splits, translator_training):
        builder(config)
    for name in config["models"]["variants"]:
        if pretrained(config, name) is None:
            variant(config, name, config["models"]["fold"])
    for kind, method in TRANSLATORS.items():
        for network in method.networks(direction_names(config)):
            baseline(config, kind, network, config["models"]["fold"])
    for method in config["evaluation"]["sweep_methods"]:
        sweep(config, method)
    for builder in (metrics, tables, figures, registration_experiment, mr_synthesis):
        builder(config)
    for builder in (virtual_sweep, synthetic_ius, segmenter, segmentation_tables):
        builder(config)
    for cohort in config["cohorts"]:
        subject_page(config, cohort)
    methods(config)


def variant(config: Config, name: str, fold: int) -> VariantSettings:
    """A model variant's training job on one fold (``models``)."""
    return VariantSettings(fold=fold, model=model(config, name), training=training(config, name))


def pretrained(config: Config, name: str) -> PretrainedSettings | None:
    """A pretrained variant's checkpoint (``models.variants.<name>.pretrained``), or None."""
    value = _variant(config, name).get("pretrained")
    if value is None:
        return None
    given = {"path": value} if isinstance(value, str) else dict(value)
    unset = {"path": None, "url": None, "sha256": None}  # the config gives some of them
    # their published weights are fold 0's; scored on its test list only unless allowed
    defaults = {"fold": 0, "score_training_subjects": False}
    return build(
        PretrainedSettings,
        {**unset, **defaults, **given},
        f"models.variants.{name}.pretrained",
        slice_size=config["preprocessing"]["slice_size"],
    )


def baseline(config: Config, kind: str, network: str, fold: int) -> BaselineSettings:
    """One network of a GAN baseline trained on one fold (e.g. Pix2Pix ``T2-to-US``)."""
    inputs, targets = translator_method(kind).modalities(network)
    return BaselineSettings(
        fold=fold,
        translator=translator(config, kind, inputs, targets),
        training=translator_training(config),
    )


def baseline_lpips_weights(config: Config, kind: str, network: str) -> str | None:
    """The LPIPS weights' folder a baseline network trains with, or None (most need none).

    SPADE's perceptual term uses their AlexNet (``TranslatorMethod.uses_feature_network``);
    raises :class:`ConfigError` when ``evaluation.lpips_weights`` leaves them out.
    """
    translator_config = baseline(config, kind, network, config["models"]["fold"]).translator
    return _lpips_folder(config, kind, translator_config)


def _lpips_folder(config: Config, kind: str, translator_config: TranslatorConfig) -> str | None:
    """:func:`baseline_lpips_weights` for a network's built config."""
    method = translator_method(kind)
    if not method.uses_feature_network(translator_config):
        return None
    folder = config["evaluation"].get("lpips_weights")
    if not folder:
        raise ConfigError(
            f"config key 'evaluation.lpips_weights' is null, but {method.title}'s perceptual "
            "term trains on the LPIPS AlexNet: give the weights' folder, or set "
            f"baselines.generators.{kind}.perceptual_weight: 0 to train without the term"
        )
    return str(folder)


def baseline_training_files(config: Config, kind: str, network: str) -> list[str]:
    """What a baseline network's training reads besides the slices and splits.

    The LPIPS weight file (:func:`baseline_lpips_weights`) and the files its method names
    (``TranslatorMethod.training_files``: ResViT's ViT weights), as the rule's inputs.
    """
    translator_config = baseline(config, kind, network, config["models"]["fold"]).translator
    folder = _lpips_folder(config, kind, translator_config)
    return [
        *([f"{folder}/{LPIPS_WEIGHTS_FILE}"] if folder else []),
        *translator_method(kind).training_files(translator_config),
    ]


def validate(config: Config, schema_path: Any) -> None:
    """Every check of the configuration, before any job.

    The schema and the workflow's cross-section rules
    (:func:`iusynth.core.config.validate_config`), then every job's settings
    (:func:`check_all`). Raises ConfigError naming the key and the fix.
    """
    validate_config(config, schema_path)
    check_all(config)
