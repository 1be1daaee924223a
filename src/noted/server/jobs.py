"""The admin's view of the background jobs: list them with their ages and errors, make
one due again, drop one. A user token gets 403 here: jobs span every user."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from noted.db.jobs import JobStatus, JobStore, job_ages
from noted.errors import NotFoundError
from noted.server.auth import Principal
from noted.server.responses import json_response, no_content
from noted.server.schemas import ERRORS, MAX_ID_CHARS, Error, JobPage
from noted.server.services import Services

__all__ = ["job_routes"]

JobId = Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS)]
FORBIDDEN: dict[int | str, dict[str, Any]] = {
    403: {"model": Error, "description": "Only the admin key sees the background jobs"}
}


def job_routes(svc: Services) -> APIRouter:
    router = APIRouter(tags=["jobs"], responses={**ERRORS, **FORBIDDEN})
    who = Depends(svc.principal)

    def jobs_of(principal: Principal) -> JobStore | Response:
        if not principal.is_admin:
            return json_response({"detail": "only the admin key sees the background jobs"}, 403)
        if not isinstance(svc.store, JobStore):
            raise NotFoundError("this server's store keeps no background jobs")
        return svc.store

    @router.get(
        "/jobs",
        summary="Pending, running and failed background jobs, oldest first",
        responses={200: {"model": JobPage}},
    )
    def list_jobs(
        principal: Annotated[Principal, who],
        status: Annotated[JobStatus | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        store = jobs_of(principal)
        if isinstance(store, Response):
            return store
        return json_response({"data": [job_ages(j) for j in store.list_jobs(status, limit)]})

    def change(principal: Principal, done: Callable[[JobStore], bool], missing: str) -> Response:
        store = jobs_of(principal)
        if isinstance(store, Response):
            return store
        if not done(store):
            raise NotFoundError(missing)
        return no_content()

    @router.post("/jobs/{job_id}/retry", status_code=204, summary="Make a job due now")
    def retry_job(principal: Annotated[Principal, who], job_id: JobId) -> Response:
        return change(principal, lambda s: s.retry_job(job_id), "no such job waiting or failed")

    @router.delete("/jobs/{job_id}", status_code=204, summary="Drop a job")
    def drop_job(principal: Annotated[Principal, who], job_id: JobId) -> Response:
        return change(principal, lambda s: s.drop_job(job_id), "no such job")

    return router
