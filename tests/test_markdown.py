"""Labels from the config print literally in the Markdown tables and read back whole."""

from __future__ import annotations

from pathlib import Path

from iusynth.reporting.index_page import parse_markdown_tables
from iusynth.reporting.markdown import markdown_escape, markdown_unescape, table_cells
from iusynth.reporting.tables import sectioned_markdown

LABELS = (
    "MM|HVAE",
    "*bold* _it_ `code` [link](x)",
    "a \\ backslash, \\| an escaped pipe",
    "&lt;img src=x onerror=alert(1)&gt; & more",
    "quoted \"A\" and 'B'",
)


def test_escape_round_trips_every_label():
    for label in LABELS:
        assert markdown_unescape(markdown_escape(label)) == label
    assert markdown_escape("MM|HVAE") == "MM\\|HVAE"
    assert markdown_escape("a & b") == "a &amp; b"


def test_a_label_keeps_its_row_in_shape_through_the_index_page_reader():
    header = ["Trained on", "n"]
    rows = [["test set: a_b"], *([label, "3"] for label in LABELS)]
    text = sectioned_markdown("Table", "A note.", header, rows, "none")
    for line in text.splitlines():
        if line.startswith("| ") and "---" not in line:
            assert len(table_cells(line)) == 2, line
    blocks = parse_markdown_tables(text, Path("table.md"))
    tables = [block for block in blocks if block.kind == "table"]
    assert [row[0] for row in tables[0].rows] == list(LABELS)
    assert [b.text for b in blocks if b.kind == "heading"] == ["Table", "test set: a_b"]
