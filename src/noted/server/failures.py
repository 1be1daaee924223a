"""What a caller is told when the store or a model fails.

Where the store is (file path, host, port) and what a model's provider answered (a
gateway's text, which may repeat the API key it was sent or name internal hosts) are the
operator's to read: the admin gets them, the log (``noted.server``) has them, and any
other caller reads the kind of failure only.
"""

from __future__ import annotations

import logging
from typing import Final

from noted.agent.agent import CANCELLED_RUN_ERROR, STOPPED_RUN_ERROR
from noted.errors import ModelError, StoreError

__all__ = ["HIDDEN_RUN_ERROR", "failure_detail", "run_error_for"]

log = logging.getLogger("noted.server")

HIDDEN_RUN_ERROR: Final = "the run failed: why is for the admin to read"
"""A failed run's ``error`` as a user token reads it (the stored text may hold a model
provider's answer or a store's address)."""


def failure_detail(exc: StoreError | ModelError, admin: bool, where: str) -> str:
    """The ``detail`` of a 503 or 502, or of a run stream's ``error`` event, for a caller
    who is the admin (``admin``) or not; the whole failure is logged, prefixed with
    ``where`` (the request, or the stream)."""
    if isinstance(exc, StoreError):
        what, hidden = "the store cannot answer", "its address and error are in the log"
    else:
        what, hidden = "the model failed", f"{type(exc).__name__}, its message is in the log"
    log.warning("%s: %s: %s", where, what, exc)
    return f"{what}: {exc if admin else hidden}"


def run_error_for(error: str | None, admin: bool) -> str | None:
    """A stored run's ``error`` as the caller reads it: as kept for the admin; for anyone
    else :data:`HIDDEN_RUN_ERROR` in place of any text but noted's own for a cancelled run."""
    if admin or error is None or error in (CANCELLED_RUN_ERROR, STOPPED_RUN_ERROR):
        return error
    return HIDDEN_RUN_ERROR
