"""The documentation stays true: generated config reference, README size, links, file lists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from iusynth.core.config_docs import COMMAND, render_config_reference
from iusynth.core.directions import Direction
from iusynth.evaluation.evaluate import write_csv
from iusynth.reporting import PAPER_RESULTS_FILE
from iusynth.reporting.tables import read_paper_results, synthesis_table

from .conftest import REPO

SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
DEFAULTS = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
PAGES = [REPO / "README.md", REPO / "config" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# A repository path in backticks: a top-level folder, then letters, digits, _ . / -
REPO_PATH = re.compile(
    r"`((?:src|workflow|config|tests|benchmarks|profiles|docs)/[A-Za-z0-9_./-]*|pyproject\.toml)`"
    r"(?! \(new\))"
)


def test_config_reference_is_current():
    expected = render_config_reference(SCHEMA, DEFAULTS)
    current = (REPO / "config" / "README.md").read_text()
    assert current == expected, f"config/README.md is stale: regenerate it with `{COMMAND}`"


CONDITIONS = {"if", "then", "else", "not"}  # constraints on keys, not keys


def schema_properties(node, path="") -> list[tuple[str, dict]]:
    """Every (path, schema) under a ``properties`` map, at any depth, $defs included."""
    found = []
    if isinstance(node, dict):
        for name, child in node.get("properties", {}).items():
            found.append((f"{path}.{name}", child))
        for key, child in node.items():
            if key not in CONDITIONS:
                found += schema_properties(child, path if key == "properties" else f"{path}/{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += schema_properties(child, f"{path}[{index}]")
    return found


def test_every_schema_property_has_a_description():
    properties = schema_properties(SCHEMA)
    assert len(properties) > 150
    missing = [path for path, node in properties if not str(node.get("description", "")).strip()]
    assert not missing, f"schema keys without a description: {missing}"


def test_readme_is_at_most_6000_bytes():
    size = len((REPO / "README.md").read_bytes())
    assert size <= 6000, f"README.md is {size} bytes; move detail into docs/"


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a Markdown page's headings."""
    text = strip_code(page.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def strip_code(text: str) -> str:
    """Markdown text without fenced blocks and inline code (their brackets are not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(strip_code(page.read_text())):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.exists():
            broken.append(f"{target}: no {destination}")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading #{anchor} in {destination.name}")
    assert not broken, f"{page.name}: broken links {broken}"


def test_extending_names_files_that_exist():
    text = (REPO / "docs" / "extending.md").read_text()
    listed = set(REPO_PATH.findall(text))
    assert len(listed) > 20
    missing = sorted(path for path in listed if not (REPO / path).exists())
    assert not missing, f"docs/extending.md lists files that do not exist: {missing}"


def test_extending_layout_tree_exists():
    text = (REPO / "docs" / "extending.md").read_text()
    tree = text.split("## Layout of the repository", 1)[1].split("```", 2)[1]
    parents: list[str] = []
    for line in tree.splitlines()[1:]:
        match = re.match(r"^( *)(\S+)", line)
        if not match or len(match.group(1)) >= 24:
            continue  # blank, or a description continued
        depth = len(match.group(1)) // 4
        parents = [*parents[:depth], match.group(2).rstrip("/")]
        assert (REPO / Path(*parents)).exists(), f"layout tree: {'/'.join(parents)} missing"


def load_preview_script():
    path = REPO / "benchmarks" / "readme_preview.py"
    spec = importlib.util.spec_from_file_location("readme_preview", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_run(results: Path) -> None:
    """Table 1 as rule synthesis_tables writes it, for two methods and sets, and figures."""
    rows = []
    for set_name in ("remind", "resect"):
        for method, temperature in (("mmhvae", 0.7), ("pix2pix", None)):
            row = {"set": set_name, "method": method, "inputs": "T2", "target": "US"}
            row |= {"temperature": temperature, "subjects": 3}
            for metric in ("psnr", "ssim", "lpips", "l1"):
                row |= {f"{metric}{suffix}": 0.25 for suffix in ("", "_low", "_high")}
            rows.append(row)
    directions = [Direction(("T2",), "US"), Direction(("US",), "T2")]
    paper = read_paper_results(PAPER_RESULTS_FILE)
    labels = {"pix2pix": "Pix2Pix", "mmhvae": "MMHVAE"}
    table = synthesis_table(pd.DataFrame(rows), labels, directions, 0.7, paper, True)
    (results / "tables").mkdir(parents=True)
    write_csv(table, results / "tables" / "table1_synthesis.csv")
    (results / "figures").mkdir()
    for name in ("registration_tre.png", "synthesis_examples.png"):
        (results / "figures" / name).write_bytes(b"\x89PNG\r\n")


def test_readme_preview_is_filled_from_a_run(tmp_path):
    preview = load_preview_script()
    readme = (REPO / "README.md").read_text()
    assert "benchmarks/readme_preview.py" in readme.split(preview.START)[1].split(preview.END)[0]
    fake_run(tmp_path / "results")
    (tmp_path / "README.md").write_text(readme)
    arguments = ["--results", str(tmp_path / "results"), "--readme", str(tmp_path / "README.md")]
    arguments += ["--docs", str(tmp_path / "docs"), "--set", "resect"]
    for _ in range(2):  # a second run replaces the block it wrote
        preview.main(arguments)
    text = (tmp_path / "README.md").read_text()
    block = text.split(preview.START)[1].split(preview.END)[0]
    assert "| MMHVAE | 0.25 | 25.0 | 25.0 |" in block and "| Pix2Pix |" in block
    assert "set `resect`, T2 → iUS (3 subjects" in block
    assert "](docs/preview/synthesis_examples.png)" in block
    assert (tmp_path / "docs" / "preview" / "synthesis_examples.png").is_file()
    assert text.count(preview.START) == 1 and len(text.encode()) <= preview.README_LIMIT
