"""A DICOM node: receives CT and MR studies by C-STORE, segments each complete study with
the shipped model, and sends the RTSTRUCT and SEG to one destination (a PACS or a TPS).

Modules: errors (:class:`.errors.NodeError`), :mod:`.config` (settings and command line), :mod:`.store` (atomic instance files),
:mod:`.jobs` (the SQLite job queue), :mod:`.storage` (the folders, a job's snapshot, retention),
:mod:`.audit` (the audit record of a job), :mod:`.scp` (the receiving side), :mod:`.send` (the
C-STORE sender), :mod:`.worker` (stability trigger, processing, audit, retention),
:mod:`.service` (wiring, usable in-process by tests), :mod:`.disk` (the free-space floor),
:mod:`.actions` (force-complete, retry and the job list, from the command line) and
``python -m hanseg.node``.

Storage layout (one folder, ``--storage``)::

    incoming/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm   everything received, until retention ends
    jobs/<job id>/input/...  and  jobs/<job id>/output/...    a job's snapshot (hard links) and results
    quarantine/<job id>/reason.json (+ the job's data)        given up: kept for a person
    audit/<job id>.json                                        one record per job, kept
    node.sqlite3                                               the job queue
"""

from __future__ import annotations
