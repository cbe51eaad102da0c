"""The Markdown subset the results tables are written in, escaped one way and read back.

Labels come from the config (``evaluation.table1``, ``segmentation.methods``...): printed
raw, a ``|`` would shift a table's columns and ``*``, ``_`` or a backtick would restyle
the text. Writers pass every label through :func:`markdown_escape`; the index page reads
the files back through :func:`table_cells` and :func:`markdown_unescape`, so it shows the
label as configured (and escapes it for HTML itself).
"""

from __future__ import annotations

import re
from typing import Any

_SPECIALS = frozenset("\\`*_[]|")
_ESCAPED = re.compile(r"\\([\\`*_\[\]|])")


def markdown_escape(text: Any) -> str:
    """Text Markdown prints as written, in a table cell too (specials escaped, ``&`` as entity)."""
    return "".join(
        "&amp;" if character == "&" else ("\\" + character if character in _SPECIALS else character)
        for character in str(text)
    )


def markdown_unescape(text: str) -> str:
    """The inverse of :func:`markdown_escape`."""
    return _ESCAPED.sub(r"\1", text).replace("&amp;", "&")


def table_cells(line: str) -> tuple[str, ...]:
    """The cells of a pipe-table row, split at its unescaped ``|`` and unescaped."""
    cells, current, index = [], [], 0
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    while index < len(body):
        character = body[index]
        if character == "\\" and index + 1 < len(body):
            current.append(body[index : index + 2])
            index += 2
            continue
        if character == "|":
            cells.append("".join(current))
            current = []
        else:
            current.append(character)
        index += 1
    if "".join(current).strip():
        cells.append("".join(current))
    return tuple(markdown_unescape(cell.strip()) for cell in cells)
