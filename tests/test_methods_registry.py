"""The GAN baselines are found by name in one registry; no other file branches on a name."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch

from iusynth import jobs
from iusynth.core.directions import Direction
from iusynth.core.modalities import MODALITIES
from iusynth.methods import TRANSLATORS, translator_method
from iusynth.reporting.citations import REFERENCES
from iusynth.training.baselines import build_trainer

from .conftest import PAPER, REPO
from .test_model import stack
from .test_synthesis import TINY_GAN_TRAINING, translator, write_lpips_file

SOURCES = [
    *(REPO / "src" / "iusynth").rglob("*.py"),
    *(REPO / "src" / "iusynth" / "reporting" / "templates").glob("*"),
    *(REPO / "workflow").rglob("*.smk"),
    REPO / "workflow" / "Snakefile",
]


@pytest.mark.parametrize("name", list(TRANSLATORS))
def test_no_file_outside_its_module_names_a_method(name):
    own = REPO / "src" / "iusynth" / "methods" / f"{name}.py"
    literal = re.compile(rf"""["']{re.escape(name)}["']""")
    naming = [
        f"{path.relative_to(REPO)}:{number}"
        for path in SOURCES
        if path != own
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert not naming, f"{name!r} named outside src/iusynth/methods/{name}.py: {naming}"


def test_every_method_states_itself_whole():
    directions = [Direction(("T2",), "US").name, Direction(("US",), "FLAIR").name]
    assert [Direction.from_name(name).name for name in directions] == directions
    for name, method in TRANSLATORS.items():
        assert method.name == name and method.title and method.layout
        assert method.citation in REFERENCES, f"{name}: cite a work of reporting.citations"
        networks = method.networks(directions)
        assert networks and len(set(networks)) == len(networks)
        for network in networks:
            inputs, targets = method.modalities(network)
            assert set(inputs) | set(targets) <= set(MODALITIES) and inputs and targets
    with pytest.raises(ValueError, match="the registered ones"):
        translator_method("resvit2")


@pytest.mark.parametrize("name", list(TRANSLATORS))
def test_every_baseline_learns_a_tiny_batch(name, tmp_path):
    method = TRANSLATORS[name]
    inputs, targets = method.modalities(method.networks(["T2-to-US"])[0])
    config = translator(name, inputs, targets, discriminator_channels=4)
    training = dataclasses.replace(TINY_GAN_TRAINING, learning_rate=1e-3)
    lpips = write_lpips_file(tmp_path).parent  # SPADE's perceptual term; others ignore it
    trainer = build_trainer(config, training, [stack(1)], [], lpips)
    batch = trainer.train.batch(0, trainer.rng, flip=False, start=0)
    given = method.validation_inputs(config)
    observed = torch.tensor([[m in given for m in MODALITIES]] * batch.images.shape[0])

    def l1() -> float:  # of the targets not given, from the validation inputs
        with torch.no_grad():
            outputs, real, weights = trainer._losses(
                batch.images, batch.fov, batch.present, observed
            )
        per_target = (outputs - real).abs().flatten(2).mean(dim=2).mean(dim=0)
        return float((per_target * weights).sum() / weights.sum())

    before = l1()
    losses = [trainer.step(batch.images, batch.fov, batch.present)[0] for _ in range(80)]
    assert all(map(math.isfinite, losses))
    after = l1()
    assert after < 0.6 * before, f"{name}: L1 {before:.3f} -> {after:.3f}"


@pytest.mark.parametrize(
    "name", [n for n, m in TRANSLATORS.items() if m.generator_settings_type is not None]
)
def test_generator_defaults_in_code_are_the_published_sizes_of_config_paper_yaml(name):
    method = TRANSLATORS[name]
    inputs, targets = method.modalities(method.networks(["T2-to-US"])[0])
    published = method.generator_settings({}, "code defaults", 192)
    assert jobs.translator(PAPER, name, inputs, targets).generator == published
