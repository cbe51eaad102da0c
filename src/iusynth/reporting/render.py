"""Rendering helpers shared by the pages: the Jinja2 environment and inlined PNG images."""

from __future__ import annotations

import base64
import io
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from iusynth.core.fileio import atomic_path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEMPLATES = "templates"  # package data of iusynth.reporting (pyproject.toml)


@dataclass(frozen=True)
class InlineImage:
    """A PNG image carried inside a page as a data URI, with its caption."""

    data_uri: str
    caption: str
    alt: str
    width_px: int

    @property
    def size_bytes(self) -> int:
        """Size of the encoded PNG."""
        encoded = self.data_uri.split(",", 1)[1]
        return len(encoded) * 3 // 4


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height of a PNG from its header."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def compact_png(png: bytes) -> bytes:
    """The same picture as a smaller 8-bit PNG (the original when that is smaller).

    Matplotlib writes 32-bit RGBA; a page's figures are grey images with a few coloured
    lines or colour maps. Grey pixels keep a fine ramp of greys (at most half a level
    off), coloured ones a palette fitted to them (octree), so that neither the images
    nor the contours change visibly.
    """
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(png)) as opened:
        pixels = np.asarray(opened.convert("RGB"))
    grey = (pixels[..., 0] == pixels[..., 1]) & (pixels[..., 1] == pixels[..., 2])
    coloured = pixels[~grey]
    palette_colours = np.zeros((0, 3), np.uint8)
    colour_index = np.zeros(0, np.uint8)
    if coloured.size:
        wanted = 96 if coloured.shape[0] < 0.05 * grey.size else 160
        fitted = Image.fromarray(coloured.reshape(1, -1, 3)).quantize(
            colors=wanted, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
        )
        colour_index = np.asarray(fitted).ravel()
        used = int(colour_index.max()) + 1
        palette_colours = np.array(fitted.getpalette()[: 3 * used], np.uint8).reshape(-1, 3)
    greys = 256 - len(palette_colours)
    index = np.empty(grey.shape, np.uint8)
    index[grey] = np.round(pixels[..., 0][grey] / 255.0 * (greys - 1)).astype(np.uint8)
    index[~grey] = colour_index.astype(np.int64) + greys
    ramp = np.round(np.arange(greys) * 255.0 / (greys - 1)).astype(np.uint8)
    palette = np.concatenate([np.repeat(ramp[:, None], 3, axis=1), palette_colours])
    image = Image.fromarray(index, mode="P")
    image.putpalette(palette.ravel().tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue() if buffer.tell() < len(png) else png


def inline_png(png: bytes, caption: str, alt: str, source: str) -> InlineImage:
    """Wrap PNG bytes (made compact) as an image of a page; ``source`` names their origin."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError(f"{source} is not a PNG image; re-run the rule that writes it")
    png = compact_png(png)
    width, _ = png_size(png)
    return InlineImage(
        data_uri="data:image/png;base64," + base64.b64encode(png).decode("ascii"),
        caption=caption,
        alt=alt,
        width_px=width,
    )


def inline_png_file(path: Path, caption: str, alt: str) -> InlineImage:
    """An existing PNG file of the workflow (e.g. a QC figure), inlined."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"figure {path} does not exist; re-run the rule that writes it")
    return inline_png(path.read_bytes(), caption, alt, str(path))


def inline_figure(figure: Any, caption: str, alt: str, dpi: int) -> InlineImage:
    """A matplotlib figure, rendered to PNG and closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    return inline_png(buffer.getvalue(), caption, alt, "a matplotlib figure")


def inline_plot(writer: Callable[[Path], None], caption: str, alt: str) -> InlineImage:
    """Run a plotting function of the package that writes a PNG file, and inline its PNG.

    Reuses the workflow's own figure code (e.g. :mod:`iusynth.reporting.figures`) unchanged: it
    writes into a temporary folder that is removed afterwards.
    """
    with tempfile.TemporaryDirectory(prefix="iusynth-report-") as folder:
        path = Path(folder) / "figure.png"
        writer(path)
        return inline_png_file(path, caption, alt)


def relative_link(target: Path, folder: Path) -> str:
    """A relative link from a page in ``folder`` to ``target`` (POSIX separators)."""
    return Path(os.path.relpath(Path(target).resolve(), Path(folder).resolve())).as_posix()


def format_number(value: Any, digits: int = 2) -> str:
    """A number with fixed decimals; an en dash for a missing (None or NaN) value."""
    if value is None:
        return "–"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "–"
    return f"{number:.{digits}f}"


def sort_key(value: Any) -> str:
    """The ``data-sort`` value of a table cell: numbers as numbers, missing values last."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float):
        return "" if math.isnan(float(value)) else repr(float(value))
    return str(value)


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "→": r"$\rightarrow$",
    "±": r"$\pm$",
    "τ": r"$\tau$",
    "×": r"$\times$",
}


def latex_escape(text: Any) -> str:
    """Text made safe for LaTeX (its special characters escaped)."""
    return "".join(_LATEX_SPECIALS.get(character, character) for character in str(text))


def environment() -> jinja2.Environment:
    """The Jinja2 environment of the report templates (HTML autoescaped, strict undefined)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("iusynth.reporting", TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["number"] = format_number
    env.filters["sortkey"] = sort_key
    env.filters["latex"] = latex_escape
    return env


def render_template(template: str, **context: Any) -> str:
    """The text of a template of ``templates/`` rendered with ``context``."""
    return environment().get_template(template).render(**context)


def write_text(output: Path, text: str) -> None:
    """Write a rendered page or text file (UTF-8), atomically."""
    with atomic_path(output) as tmp:
        tmp.write_text(text, encoding="utf-8")
