"""The QA picture of a segmentation: what a person looks at to check a result at a glance.

Three orthogonal slices of the CT (axial, coronal, sagittal) through the centre of the
segmented region, each organ's outline in its colour, and a legend with the names. Drawn by
the product itself (``process.py --qa``, the DICOM node's dashboard, ``python -m
evaluation.qa``) with numpy, SimpleITK and Pillow only.

* **Same way round for any CT**: each view is resampled in physical space onto an
  axis-aligned (LPS) plane of square pixels, so a flipped or oblique CT looks like any other and
  the slice thickness shows as it is: anterior up in the axial view (patient's right on the
  left, as radiology shows it), superior up in the coronal and sagittal views (anterior on the
  left in the sagittal one).
* **Thin, crisp outlines**: the planes are upscaled by a whole factor (labels nearest
  neighbour), and a label's outline is its boundary on the picture: a pixel of label ``c`` with
  a 4-neighbour that is not ``c``.
* **Colours**: the RTSTRUCT's default palette (:func:`hanseg.dicom.names.default_colours`), so
  the picture and the planning system show each structure in the same colour; touching
  structures differ by CIE76 ΔE ≥ 20 in it (the tests check this on a phantom).
* **Truth** (optional) in a second style: dashed, the label colour alternating with white
  every :data:`DASH` pixels along the outline, drawn over the prediction's solid line.
* **MR** (optional, with the transform that registers it to the CT): a second row, the same
  three planes of the MR with the same outlines.

Nothing of the CT's header is drawn: the title is the caller's (a case id or UIDs), never a
patient's name or id.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw, ImageFont, features

from .dicom.names import default_colours
from .labels import LABEL_NAMES, NUM_CLASSES
from .qa_planes import VIEWS, boundary, centre_of, dash_on, physical_bounds, plane_of, upscale_labels

Colour = tuple[int, int, int]
#: Image.Resampling from Pillow 9.1 on; the same constants on Image before (requirements allow 8.3)
_RESAMPLING: Any = getattr(Image, "Resampling", Image)
#: pixel box (x0, y0, x1, y1), half-open
PixelBox = tuple[int, int, int, int]

#: The panels' longer side is aimed at this many pixels (upscaling stops at :data:`MAX_ZOOM`).
PANEL_PX = 512
#: At most this many plane pixels along a panel's longer side before upscaling.
PLANE_PX = 256
MAX_ZOOM = 8
#: Font size of every text (legend, title, captions); at least 12 px of ink in the legend.
FONT_PX = 16
CT_WINDOW = (-250.0, 350.0)
GAP = 8
BACKGROUND: Colour = (0, 0, 0)
LEGEND_BACKGROUND: Colour = (32, 32, 32)
TEXT: Colour = (255, 255, 255)
DASH_GAP_COLOUR: Colour = (255, 255, 255)


def _palette() -> tuple[Colour, ...]:
    by_name = default_colours()
    return ((0, 0, 0), *(by_name[LABEL_NAMES[i]] for i in range(1, NUM_CLASSES)))


#: Colour of label id ``i`` (index 0, background, is never drawn).
PALETTE: tuple[Colour, ...] = _palette()


@dataclass(frozen=True)
class LegendEntry:
    label: int
    name: str
    colour: Colour
    swatch: PixelBox
    text: PixelBox


@dataclass(frozen=True)
class QaPicture:
    """The picture and where things are in it (for the tests and for callers that crop)."""

    image: Image.Image
    panels: Mapping[str, PixelBox]  # "axial", "coronal", "sagittal", "MR axial"...
    legend: tuple[LegendEntry, ...]
    style_key: PixelBox | None  # the "prediction solid, truth dashed" line, when a truth is drawn
    mm_per_px: float


# --- text -----------------------------------------------------------------------------------


class _Text:
    """Text drawn as masks: FreeType's default font at :data:`FONT_PX`, or, where Pillow was
    built without FreeType, its bitmap font (11 px) doubled, so text is never under 12 px."""

    def __init__(self) -> None:
        self.scale = 1
        self.font: Any
        try:
            if not features.check("freetype2"):
                raise OSError("Pillow without FreeType")
            self.font = ImageFont.load_default(size=FONT_PX)  # Pillow >= 10.1
        except (OSError, TypeError):
            self.font = getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)()
            self.scale = 2

    def mask(self, text: str) -> Image.Image:
        """An ``L`` image just as large as the text's line (ink 255), scaled as needed."""
        _, _, x1, y1 = self.font.getbbox(text or " ")
        height = int(max(y1, self.font.getbbox("Ag_|")[3])) + 2
        out = Image.new("L", (int(x1) + 2, height), 0)
        ImageDraw.Draw(out).text((0, 0), text, fill=255, font=self.font)
        if self.scale != 1:
            out = out.resize((out.width * self.scale, out.height * self.scale), _RESAMPLING.NEAREST)
        return out

    def draw(self, canvas: Image.Image, xy: tuple[int, int], text: str, colour: Colour = TEXT) -> PixelBox:
        mask = self.mask(text)
        canvas.paste(Image.new("RGB", mask.size, colour), xy, mask)
        return xy[0], xy[1], xy[0] + mask.width, xy[1] + mask.height


def _grey(plane: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = window
    return (np.clip((plane - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def _mr_window(plane: np.ndarray) -> tuple[float, float]:
    """Black at 0, white at the 99th percentile of the plane's signal."""
    inside = plane[plane > 0]
    if inside.size < 10:
        return 0.0, 1.0
    hi = float(np.percentile(inside, 99))
    return 0.0, max(hi, 1e-3)  # 0 is no signal


def _panel(
    grey: np.ndarray, zoom: int, labels: np.ndarray, truth: np.ndarray | None, palette: Sequence[Colour]
) -> np.ndarray:
    """The RGB panel: the grey plane upscaled (bilinear), the prediction's outlines solid and
    the truth's dashed on top."""
    height, width = grey.shape[0] * zoom, grey.shape[1] * zoom
    base = Image.fromarray(grey).resize((width, height), _RESAMPLING.BILINEAR)
    rgb = np.array(base.convert("RGB"))
    lut = np.array(palette, np.uint8)
    big = upscale_labels(labels, zoom)
    line = boundary(big)
    rgb[line] = lut[big[line]]
    if truth is not None:
        big_truth = upscale_labels(truth, zoom)
        outline = boundary(big_truth)
        on = dash_on(outline)
        rgb[on] = lut[big_truth[on]]
        rgb[outline & ~on] = DASH_GAP_COLOUR
    return rgb


# --- the picture ------------------------------------------------------------------------------


def _as_labels(array: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.rint(array).astype(np.int64)
    out[(out < 0) | (out >= NUM_CLASSES)] = 0
    return out


def render_qa(
    ct: sitk.Image,
    labels: sitk.Image,
    *,
    truth: sitk.Image | None = None,
    mr: sitk.Image | None = None,
    mr_transform: sitk.Transform | None = None,
    title: str = "",
    names: Sequence[str] | Mapping[int, str] | None = None,
    colours: Mapping[int, Colour] | None = None,
) -> QaPicture:
    """The picture and its layout; see :func:`draw_qa`."""
    palette = list(PALETTE)
    for label, colour in (colours or {}).items():
        palette[label] = colour
    lo, hi = physical_bounds(ct)
    extent = hi - lo
    spacing = max(min(ct.GetSpacing()), float(extent.max()) / PLANE_PX)
    shape_xyz = np.maximum(1, np.round(extent / spacing)).astype(int)
    zoom = int(max(1, min(MAX_ZOOM, round(PANEL_PX / float(shape_xyz.max())))))
    centre = centre_of(ct, labels, truth)
    nearest, linear = sitk.sitkNearestNeighbor, sitk.sitkLinear

    rows: list[list[tuple[str, np.ndarray]]] = [[], []]
    present: set[int] = set()
    for view in VIEWS:
        lab = _as_labels(plane_of(labels, view, centre, lo, spacing, shape_xyz, nearest, 0))
        tru = None if truth is None else _as_labels(plane_of(truth, view, centre, lo, spacing, shape_xyz, nearest, 0))
        present |= set(np.unique(lab).tolist()) | (set() if tru is None else set(np.unique(tru).tolist()))
        hu = plane_of(ct, view, centre, lo, spacing, shape_xyz, linear, -1000.0)
        rows[0].append((view.name, _panel(_grey(hu, CT_WINDOW), zoom, lab, tru, palette)))
        if mr is not None:
            values = plane_of(mr, view, centre, lo, spacing, shape_xyz, linear, 0.0, mr_transform)
            rows[1].append((f"MR {view.name}", _panel(_grey(values, _mr_window(values)), zoom, lab, tru, palette)))
    present.discard(0)

    text = _Text()
    line_h = text.mask("Ag_").height
    panel_rows = [row for row in rows if row]
    width = GAP + sum(panel.shape[1] + GAP for _, panel in panel_rows[0])
    display = _names(names)

    # the legend's entries laid out first: its height decides the canvas
    entries = [(c, display[c]) for c in sorted(present)]
    swatch = line_h - 4
    col_w = swatch + 6 + max((text.mask(n).width for _, n in entries), default=0) + 2 * GAP
    width = max(width, text.mask(title).width + 2 * GAP, col_w + GAP)  # the title and a legend column fit
    ncols = max(1, (width - GAP) // col_w)
    legend_rows = -(-len(entries) // ncols)
    key_h = line_h + GAP if truth is not None else 0

    title_h = line_h + GAP
    heights = [max(panel.shape[0] for _, panel in row) for row in panel_rows]
    panels_h = sum(line_h + h + GAP for h in heights)
    legend_top = title_h + panels_h + GAP
    height = legend_top + key_h + legend_rows * (line_h + 4) + GAP
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    ImageDraw.Draw(canvas).rectangle((0, legend_top - GAP // 2, width, height), fill=LEGEND_BACKGROUND)
    text.draw(canvas, (GAP, GAP // 2), title)

    boxes: dict[str, PixelBox] = {}
    y = title_h
    for row, row_h in zip(panel_rows, heights):
        x = GAP
        for name, panel in row:
            text.draw(canvas, (x, y), name)
            canvas.paste(Image.fromarray(panel), (x, y + line_h))
            boxes[name] = (x, y + line_h, x + panel.shape[1], y + line_h + panel.shape[0])
            x += panel.shape[1] + GAP
        y += line_h + row_h + GAP

    style_key = None
    y = legend_top
    if truth is not None:
        style_key = _draw_style_key(canvas, text, (GAP, y), line_h)
        y += key_h
    legend = []
    draw = ImageDraw.Draw(canvas)
    for i, (label, name) in enumerate(entries):
        x0 = GAP + (i % ncols) * col_w
        y0 = y + (i // ncols) * (line_h + 4)
        box = (x0, y0 + 2, x0 + swatch, y0 + 2 + swatch)
        draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=palette[label])
        text_box = text.draw(canvas, (x0 + swatch + 6, y0), name)
        legend.append(LegendEntry(label, name, palette[label], box, text_box))
    return QaPicture(canvas, boxes, tuple(legend), style_key, spacing / zoom)


def _draw_style_key(canvas: Image.Image, text: _Text, xy: tuple[int, int], line_h: int) -> PixelBox:
    """ "—— prediction   - - - truth" in the outlines' own styles (grey for any label)."""
    x, y = xy
    mid = y + line_h // 2
    sample = np.zeros((1, 40), bool)
    sample[0, :] = True
    grey = (200, 200, 200)
    pixels = canvas.load()
    assert pixels is not None
    for i in range(40):
        pixels[x + i, mid] = grey
    right = text.draw(canvas, (x + 46, y), "prediction (solid)")[2]
    x2 = right + 3 * GAP
    on = dash_on(sample)
    for i in range(40):
        pixels[x2 + i, mid] = grey if on[0, i] else DASH_GAP_COLOUR
    end = text.draw(canvas, (x2 + 46, y), "truth (dashed)")[2]
    return x, y, end, y + line_h


def _names(names: Sequence[str] | Mapping[int, str] | None) -> dict[int, str]:
    display = dict(LABEL_NAMES)
    if isinstance(names, Mapping):
        display.update({int(k): str(v) for k, v in names.items()})
    elif names is not None:
        display.update({i: str(n) for i, n in enumerate(names) if i > 0})
    return display


def draw_qa(
    ct: sitk.Image,
    labels: sitk.Image,
    *,
    truth: sitk.Image | None = None,
    mr: sitk.Image | None = None,
    mr_transform: sitk.Transform | None = None,
    title: str = "",
    names: Sequence[str] | Mapping[int, str] | None = None,
    colours: Mapping[int, Colour] | None = None,
) -> Image.Image:
    """The QA picture of ``labels`` (a label map on ``ct``'s grid, ids of :mod:`hanseg.labels`).

    ``truth``: a reference label map, drawn dashed; ``mr``: an MR, shown in a second row,
    resampled in physical space through ``mr_transform`` (CT point → MR point, as
    :func:`hanseg.registration.register_mr_to_ct` finds it; None: the MR is already aligned);
    ``title``: a case id or UIDs, never a patient's name; ``names``: display names by label id
    (a sequence indexed by id, or a mapping; default the label names); ``colours``: RGB by
    label id where they differ from :data:`PALETTE` (a site's RTSTRUCT colours)."""
    return render_qa(
        ct, labels, truth=truth, mr=mr, mr_transform=mr_transform, title=title, names=names, colours=colours
    ).image


def write_qa_png(path: Path, ct: sitk.Image, labels: sitk.Image, **options: Any) -> Path:
    """:func:`draw_qa` written to ``path`` atomically (a temporary file in the same folder,
    then renamed over it): a reader sees the old picture or the new one, never half."""
    path = Path(path)
    image = draw_qa(ct, labels, **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the picture from a dashboard's user
        with os.fdopen(fd, "wb") as handle:
            image.save(handle, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
