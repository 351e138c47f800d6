"""Named exceptions for bad input. Each message is written for a radiotherapy physicist,
not a Python developer: what is wrong, with which file, and what to do about it."""

from __future__ import annotations


class HansegError(Exception):
    """Base class of every error this package raises on purpose."""


class ImageReadError(HansegError):
    """An input file could not be read as a medical image."""


class InvalidImageError(HansegError):
    """An image was read but cannot be used (wrong dimension, bad geometry, bad values)."""


class InputLayoutError(HansegError):
    """The input folder does not hold what the challenge layout promises."""


class ModelError(HansegError):
    """The model folder is missing, incomplete or corrupt."""


class PlansError(ModelError):
    """``plans.json`` is missing a field or holds a value of the wrong kind."""


class OutputError(HansegError):
    """The output folder cannot be written."""


class InputTooLargeError(HansegError):
    """The case would not fit in the memory this process may use."""


class DicomInputError(InputLayoutError):
    """A DICOM input folder holds no usable CT series, or two equally good ones."""


class DicomSeriesError(InvalidImageError):
    """A DICOM series cannot be built into one volume (missing or duplicate slices, unequal
    spacing, mixed orientations or frames of reference, a non-axial or tilted series)."""


class NameMapError(HansegError):
    """The structure name-and-colour map file cannot be used."""
