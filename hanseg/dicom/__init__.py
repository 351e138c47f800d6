"""DICOM input and output: from a folder of files to the CT (and T1 MR) volumes, and from
the label map back to DICOM objects a treatment planning system imports. Modules:

* ``scan``: walk a folder at any depth, read every header, group instances into studies
  and series; unreadable files are recorded with their reason, never raised;
* ``select``: per study, choose the planning CT and the T1 MR by written-down rules
  (overridable from JSON), with a reason for every series not chosen;
* ``volume``: check one series (orientation, frame of reference, duplicates, gaps, gantry
  tilt) and build its volume (CT in HU) with the instances in slice (k) order;
* ``contours``: label-map slices to planar contours and back;
* ``names``: structure names and colours of the output objects;
* ``rtstruct``: the RT Structure Set referencing the CT's slices;
* ``seg``: the DICOM Segmentation object;
* ``identity``: the series and instance UIDs of the output objects, derived from what made
  them, so that the same input gives the same objects;
* ``common``: what ``rtstruct`` and ``seg`` share: the patient and study attributes copied
  from the CT, the "not reviewed" wording, and the checked, atomic write of a file.

The axis contract is the one of :mod:`hanseg.io` (SimpleITK x,y,z; numpy z,y,x; LPS).
"""
