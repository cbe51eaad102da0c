"""The README's two commands stay true: CI runs the second, the first runs the demo."""

from __future__ import annotations

import re

from .conftest import REPO


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    quick_start = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quick_start, re.S)


def test_quick_start_has_exactly_two_one_line_commands():
    commands = readme_commands()
    assert len(commands) == 2
    assert all("\n" not in command for command in commands)
    demo, tests = commands
    assert demo.endswith("snakemake --cores all")
    assert tests.endswith("pytest")
    for command in commands:
        assert "torch==2.13.0" in command
        assert "CMAKE_POLICY_VERSION_MINIMUM=3.5" in command


def test_ci_runs_the_readme_test_command():
    script = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert script[-1] == readme_commands()[1]
