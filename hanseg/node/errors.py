"""The errors of the DICOM node. Messages name the study, the peer and what to do."""

from __future__ import annotations

from ..errors import HansegError


class NodeError(HansegError):
    """The node cannot do what it was asked (bad settings, a peer that refuses, a full disk)."""


class StoreError(NodeError):
    """A received instance could not be written to disk: the sender is told to retry."""


class SendError(NodeError):
    """The destination did not accept the results (down, refused the association, or a
    failure status for an instance): the job is retried later."""


class InvalidUidError(NodeError):
    """A received instance names its study, series or instance with something that is not a UID."""
