"""The names users rely on keep working through refactors."""

from __future__ import annotations

import re

from iusynth.cli import stages

from .conftest import REPO, rule_stages


def test_model_names_import_from_the_model_package():
    from iusynth.model import MMHVAE, ModelConfig, load_authors_checkpoint
    from iusynth.model.authors import load_authors_checkpoint as defined

    assert load_authors_checkpoint is defined
    assert callable(MMHVAE.translate) and ModelConfig.__name__ == "ModelConfig"


def test_stages_named_in_the_docs_exist():
    texts = [(REPO / "README.md").read_text()]
    texts += [path.read_text() for path in sorted((REPO / "docs").glob("*.md"))]
    named = {name for text in texts for name in re.findall(r"\biusynth ([a-z][a-z-]+)", text)}
    assert named, "the docs name no stage"
    assert named <= set(stages()), sorted(named - set(stages()))


def test_every_rule_runs_a_known_stage():
    used = rule_stages()
    assert len(used) > 20 and used <= set(stages()), sorted(used - set(stages()))
