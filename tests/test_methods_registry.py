"""The GAN baselines are found by name in one registry; no other file branches on a name."""

from __future__ import annotations

import re

import pytest

from iusynth.core.directions import Direction
from iusynth.core.modalities import MODALITIES
from iusynth.methods import TRANSLATORS, translator_method
from iusynth.reporting.citations import REFERENCES

from .conftest import REPO

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
