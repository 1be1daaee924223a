"""The agent routes: list the server's agents, and run one, streaming the answer as
server-sent events (``event: content`` pieces, tool calls, then ``event: run_completed``)."""

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from fastapi.responses import StreamingResponse

from noted.agent import Agent
from noted.agent.agent import STOPPED_RUN_ERROR
from noted.agent.events import (
    ContentDelta,
    RunCompleted,
    RunEvent,
    RunStarted,
    ToolCallCompleted,
    ToolCallStarted,
)
from noted.errors import (
    ConflictError,
    ModelError,
    NotedError,
    NotFoundError,
    RunNotSavedError,
    StoreError,
)
from noted.memory import DEFAULT_USER_ID
from noted.schema import check_storable
from noted.server.auth import Principal
from noted.server.failures import failure_detail
from noted.server.memories import ID
from noted.server.responses import json_response
from noted.server.schemas import (
    ERRORS,
    MAX_ID_CHARS,
    AgentOut,
    Error,
    NotSavedOut,
    RunOut,
    RunRequest,
)
from noted.server.services import Services
from noted.server.stopping import OpenRuns

log = logging.getLogger("noted.server")

__all__ = ["agent_id_of", "agent_routes"]

DEFAULT_AGENT_ID = "agent"
NO_SESSION = "no such session"  # what a user token is told of another user's session


def agent_id_of(agent: Agent) -> str:
    return agent.agent_id or DEFAULT_AGENT_ID


_EVENTS_DESCRIPTION = """The run as JSON (`RunOut`) when `stream` is false. When it is true
(the default), server-sent events, each `event: KIND` and `data: JSON`:

- `run_started`: `{run_id, session_id, user_id}`
- `content`: `{text}`, the next piece of the answer
- `tool_call_started`: `{id, name, arguments}`
- `tool_call_completed`: the tool's execution (`ToolExecutionOut`)
- `run_completed`: the whole run (`RunOut`), the last event
- `error`: `{detail}`, in place of `run_completed` when the run failed after it started
  (also when the server stopped it as it shut down); `{detail, run}` when the run was
  answered but the store failed to save it, `run` the whole run (`RunOut`)
"""


_EVENT_KINDS = (RunStarted, ContentDelta, ToolCallStarted, ToolCallCompleted, RunCompleted)
_EVENT_SCHEMA: dict[str, Any] = {
    "description": "One server-sent event: its kind, and its data as JSON text",
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"enum": [*(e.kind for e in _EVENT_KINDS), "error"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}


def _event_data(event: RunEvent) -> dict[str, Any]:
    if isinstance(event, RunStarted):
        return {"run_id": event.run_id, "session_id": event.session_id, "user_id": event.user_id}
    if isinstance(event, ContentDelta):
        return {"text": event.text}
    if isinstance(event, ToolCallStarted):
        call = event.tool_call
        return {"id": call.id, "name": call.name, "arguments": call.arguments}
    if isinstance(event, ToolCallCompleted):
        return event.execution.to_dict()
    return event.result.to_dict()


def sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def agent_routes(svc: Services) -> APIRouter:
    router = APIRouter(tags=["agents"], responses=ERRORS)
    who = Depends(svc.principal)

    @router.get(
        "/agents", summary="The agents this server runs", responses={200: {"model": list[AgentOut]}}
    )
    def list_agents(principal: Annotated[Principal, who]) -> Response:
        return json_response(
            [
                {
                    "agent_id": agent_id,
                    "name": agent.name,
                    "description": agent.description,
                    "model": agent.model.id,
                }
                for agent_id, agent in svc.agents.items()
            ]
        )

    @router.post(
        f"/agents/{{agent_id:{ID}}}/runs",
        summary="Run the agent on a message (streamed as server-sent events by default)",
        responses={
            200: {
                "model": RunOut,
                "description": _EVENTS_DESCRIPTION,
                "content": {"text/event-stream": {"schema": _EVENT_SCHEMA}},
            },
            409: {
                "model": Error,
                "description": "The session belongs to another user than the one named",
            },
            413: {
                "model": Error,
                "description": "The request body is too large, or the run (the model's "
                "answer included) is larger than a session store keeps, and was not saved "
                "(when stream is false)",
            },
            502: {"model": Error, "description": "The model failed (when stream is false)"},
            503: {
                "model": NotSavedOut,
                "description": "The store cannot answer, or the server stopped the run as "
                "it shut down (when stream is false); `run`, the whole run, when the model "
                "answered and the store failed to save it",
            },
        },
    )
    async def run_agent(
        principal: Annotated[Principal, who],
        agent_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS)],
        body: RunRequest,
    ) -> Response:
        agent = svc.agents.get(agent_id)
        if agent is None:
            raise NotFoundError(f"no agent {agent_id!r} on this server")
        user = principal.owner(body.user_id, default=agent.user_id or DEFAULT_USER_ID)
        check_storable("message", body.message)
        try:
            with svc.runs.waiting():
                if not body.stream:
                    result = await agent.arun(
                        body.message, user_id=user, session_id=body.session_id
                    )
                    return json_response(result.to_dict())
                events = agent.arun(
                    body.message, user_id=user, session_id=body.session_id, stream=True
                )
                first = await anext(events)  # errors before the answer starts get a status
        except ConflictError:
            if principal.is_admin:
                raise
            raise NotFoundError(NO_SESSION) from None
        except RunNotSavedError as exc:
            where = f"POST /agents/{agent_id}/runs"
            return json_response(not_saved(exc, principal.is_admin, where), 503)
        except asyncio.CancelledError:
            if not svc.runs.stopped():
                raise
            return json_response({"detail": STOPPED_RUN_ERROR}, 503)
        return StreamingResponse(
            _stream(first, events, principal.is_admin, svc.runs),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router


def not_saved(exc: RunNotSavedError, admin: bool, where: str) -> dict[str, Any]:
    """What a caller is told of a run answered but not saved: that, why (the store's
    failure as :func:`failure_detail` tells it), and the whole run, its answer included."""
    cause = exc.__cause__ if isinstance(exc.__cause__, StoreError) else exc
    detail = failure_detail(cause, admin, f"{where}: run {exc.run.run_id} not saved")
    return {"detail": f"the run was answered but not saved: {detail}", "run": exc.run.to_dict()}


async def _stream(
    first: RunEvent, events: AsyncIterator[RunEvent], admin: bool, runs: OpenRuns
) -> AsyncIterator[bytes]:
    """The run's events as server-sent events, ending with ``run_completed``, or ``error``
    when it failed, or when the server stopped it (``runs``) as it shut down."""
    yield sse(first.kind, _event_data(first))
    try:
        while True:
            with runs.waiting():
                event = await anext(events, None)
            if event is None:
                break
            yield sse(event.kind, _event_data(event))
            if isinstance(event, RunCompleted):
                break
    except asyncio.CancelledError:
        if not runs.stopped():
            raise
        yield sse("error", {"detail": STOPPED_RUN_ERROR})
    except RunNotSavedError as exc:
        yield sse("error", not_saved(exc, admin, "the run's stream"))
    except (StoreError, ModelError) as exc:  # what and where: the admin's only
        yield sse("error", {"detail": failure_detail(exc, admin, "the run's stream failed")})
    except ConflictError as exc:
        # another user opened the session while this run answered: to a user token, a
        # session of someone else's is no session, as when the run is refused up front
        yield sse("error", {"detail": str(exc) if admin else NO_SESSION})
    except NotedError as exc:
        yield sse("error", {"detail": str(exc)})
    except Exception:  # a model or tool that fails some other way: said, then logged
        log.exception("the run's stream failed")
        yield sse("error", {"detail": "the run failed: see the server's log"})
