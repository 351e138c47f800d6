"""Structure names and colours of the DICOM outputs, and who made them.

Hospitals rename structures to their own templates (AAPM TG-263 or local), so the name and
colour of each OAR in an RTSTRUCT or SEG comes from a small, configurable map keyed by the
**label name** of :mod:`hanseg.labels` (the single source of ids and names; nothing here
restates it).

Default palette (fixed, computed, documented here): the 22 organs (a left/right pair
counts once) in label order get hues on a golden-ratio walk round the colour circle
(hue_i = i * 0.618... turns), so neighbours in the list differ strongly; saturation
alternates 0.85 / 0.60. A left structure is drawn at full value, its right partner darker
(value 0.70) in the same hue, an unpaired organ at value 0.90.

Map file (JSON, or TOML on Python >= 3.11), one entry per structure to change::

    {"Parotid_L": {"name": "Parotid_Lt", "colour": [255, 0, 0]},
     "Arytenoid": null,
     "Lips": {"drop": true}}

``null`` or ``"drop": true`` leaves the structure out of the outputs; ``"color"`` is
accepted for ``"colour"``. TOML has no null, so it uses ``drop = true``.
"""

from __future__ import annotations

import colorsys
import difflib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import NameMapError
from ..labels import LABEL_IDS, LABEL_NAMES, LR_PAIRS, OAR_NAMES

log = logging.getLogger(__name__)

#: DICOM LO (ROI Name, Segment Label) holds at most 64 characters.
MAX_NAME_LENGTH = 64
_GOLDEN_TURN = 0.6180339887498949
_ENTRY_KEYS = frozenset({"name", "colour", "color", "drop"})
# Backslash separates DICOM values; control characters are not allowed in LO.
_BAD_CHARACTERS = re.compile(r"[\\\x00-\x1f\x7f]")

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class StructureStyle:
    """How one label id is written: its structure name and display colour (RGB 0..255)."""

    label: int
    name: str
    colour: Colour


@dataclass(frozen=True)
class Provenance:
    """Who made a segmentation; written into every DICOM object (equipment, algorithm)."""

    model_version: str
    software_version: str
    manufacturer: str = "hanseg"
    model_name: str = "hanseg head-and-neck OAR segmentation"
    #: Software has no serial number, but SEG requires one (Type 1): an installation id
    #: if the site sets one, else "0".
    device_serial_number: str = "0"

    def __post_init__(self) -> None:
        for field_name in ("model_version", "software_version", "manufacturer", "model_name", "device_serial_number"):
            value = getattr(self, field_name)
            if not value or len(value) > MAX_NAME_LENGTH or _BAD_CHARACTERS.search(value):
                raise ValueError(
                    f"provenance {field_name} {value!r}: must be 1..64 printable "
                    "characters without backslash (DICOM LO)"
                )


def _hsv_colour(hue: float, saturation: float, value: float) -> Colour:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return (round(255 * r), round(255 * g), round(255 * b))


def default_colours() -> dict[str, Colour]:
    """The default palette by OAR name (see the module docstring)."""
    partner = dict(LR_PAIRS)
    rights = set(partner.values())
    colours: dict[str, Colour] = {}
    organs = [n for n in OAR_NAMES if n not in rights]
    for i, name in enumerate(organs):
        hue, saturation = i * _GOLDEN_TURN, 0.85 if i % 2 == 0 else 0.60
        if name in partner:
            colours[name] = _hsv_colour(hue, saturation, 1.0)
            colours[partner[name]] = _hsv_colour(hue, saturation, 0.70)
        else:
            colours[name] = _hsv_colour(hue, saturation, 0.90)
    return colours


def default_styles() -> tuple[StructureStyle, ...]:
    """All 30 OARs under their label names and default colours, in label order."""
    colours = default_colours()
    return tuple(StructureStyle(LABEL_IDS[n], n, colours[n]) for n in OAR_NAMES)


def check_name(name: object, where: str) -> str:
    """``name`` if it can be a DICOM ROI Name / Segment Label, else :class:`NameMapError`."""
    if not isinstance(name, str) or not name.strip():
        raise NameMapError(f"{where}: the name must be a non-empty text, got {name!r}")
    if name != name.strip():
        raise NameMapError(f"{where}: the name {name!r} has leading or trailing spaces")
    if len(name) > MAX_NAME_LENGTH:
        raise NameMapError(
            f"{where}: the name {name!r} has {len(name)} characters; DICOM allows at most {MAX_NAME_LENGTH}"
        )
    if _BAD_CHARACTERS.search(name):
        raise NameMapError(f"{where}: the name {name!r} holds a backslash or control character")
    return name


def check_colour(colour: object, where: str) -> Colour:
    """``colour`` as an (r, g, b) tuple of integers 0..255, else :class:`NameMapError`."""
    if isinstance(colour, (list, tuple)) and len(colour) == 3:
        red, green, blue = colour
        if all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in colour):
            return red, green, blue
    raise NameMapError(f"{where}: the colour must be three whole numbers 0..255 ([red, green, blue]), got {colour!r}")


def check_styles(styles: tuple[StructureStyle, ...], where: str = "structure styles") -> None:
    """Every label known and used once, every name valid and unique, every colour valid."""
    if not styles:
        raise NameMapError(f"{where}: every structure is dropped; nothing would be written")
    seen_labels: set[int] = set()
    seen_names: dict[str, str] = {}
    for style in styles:
        if style.label not in LABEL_NAMES or style.label == 0 or style.label in seen_labels:
            raise NameMapError(f"{where}: label {style.label} is unknown or given twice")
        seen_labels.add(style.label)
        check_name(style.name, f"{where}, {LABEL_NAMES[style.label]}")
        check_colour(style.colour, f"{where}, {LABEL_NAMES[style.label]}")
        # Planning systems compare structure names without regard to case.
        key = style.name.casefold()
        if key in seen_names:
            raise NameMapError(
                f"{where}: {seen_names[key]} and {LABEL_NAMES[style.label]} would "
                f"both be written as {style.name!r}; output names must differ"
            )
        seen_names[key] = LABEL_NAMES[style.label]


def _read_map_file(path: Path) -> Mapping[str, Any]:
    """The parsed map file: a JSON object, or a TOML table for ``.toml`` files."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NameMapError(f"{path}: cannot read the structure name map ({exc})") from exc
    try:
        if path.suffix.lower() == ".toml":
            import tomllib  # Python >= 3.11; JSON works everywhere

            data: object = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ImportError as exc:
        raise NameMapError(f"{path}: TOML name maps need Python 3.11 or newer; use JSON") from exc
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError both are
        raise NameMapError(f"{path}: not a valid {path.suffix.lstrip('.') or 'JSON'} file ({exc})") from exc
    if not isinstance(data, dict):
        raise NameMapError(f"{path}: expected an object keyed by OAR name, got {type(data).__name__}")
    return data


def _unknown_oar(key: str, where: str) -> NameMapError:
    close = difflib.get_close_matches(key, OAR_NAMES, n=1)
    hint = f" (did you mean {close[0]}?)" if close else f"; known: {', '.join(OAR_NAMES)}"
    return NameMapError(f"{where}: {key!r} is not an OAR name{hint}")


def _apply_entry(style: StructureStyle, entry: object, where: str) -> StructureStyle | None:
    """The style after one map entry; None when the entry drops the structure."""
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise NameMapError(f"{where}: expected null or an object with name/colour/drop, got {entry!r}")
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise NameMapError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: name, colour, drop")
    if "colour" in entry and "color" in entry:
        raise NameMapError(f"{where}: give either 'colour' or 'color', not both")
    drop = entry.get("drop", False)
    if not isinstance(drop, bool):
        raise NameMapError(f"{where}: 'drop' must be true or false, got {drop!r}")
    if drop:
        if len(entry) > 1:
            raise NameMapError(f"{where}: a dropped structure cannot also be renamed or recoloured")
        return None
    name = check_name(entry["name"], where) if "name" in entry else style.name
    colour_value = entry.get("colour", entry.get("color"))
    colour = check_colour(colour_value, where) if colour_value is not None else style.colour
    return replace(style, name=name, colour=colour)


def _log_map(path: Path, before: tuple[StructureStyle, ...], after: tuple[StructureStyle, ...]) -> None:
    kept = {s.label: s for s in after}
    renamed = [f"{b.name} -> {kept[b.label].name}" for b in before if b.label in kept and kept[b.label].name != b.name]
    recoloured = [b.name for b in before if b.label in kept and kept[b.label].colour != b.colour]
    dropped = [b.name for b in before if b.label not in kept]
    log.info(
        "structure name map %s: %d structures; renamed: %s; recoloured: %s; dropped: %s",
        path,
        len(after),
        ", ".join(renamed) or "none",
        ", ".join(recoloured) or "none",
        ", ".join(dropped) or "none",
    )


def load_name_map(path: Path | str) -> tuple[StructureStyle, ...]:
    """The default styles changed by the map file at ``path`` (see the module docstring).

    Raises :class:`NameMapError` for an unreadable file, an unknown OAR name, an empty,
    over-long or duplicate output name, or a colour outside 0..255.
    """
    path = Path(path)
    entries = _read_map_file(path)
    for key in entries:
        if key not in LABEL_IDS:
            raise _unknown_oar(key, str(path))
    defaults = default_styles()
    styles = []
    for style in defaults:
        if style.name not in entries:
            styles.append(style)
            continue
        changed = _apply_entry(style, entries[style.name], f"{path}, {style.name}")
        if changed is not None:
            styles.append(changed)
    result = tuple(styles)
    check_styles(result, str(path))
    _log_map(path, defaults, result)
    return result
