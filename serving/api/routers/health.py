"""``GET /v1/health`` (liveness) and ``GET /v1/ready`` (readiness).

Liveness answers 200 while the process can answer at all, so an orchestrator does
not restart a server that is only loading its model; readiness answers 503 until
the model is loaded, and again from the moment shutdown begins, so no traffic
reaches a server that cannot (or will not) analyse.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from serving.api.dependencies import get_predictor
from serving.api.runner import SHUTTING_DOWN
from serving.errors import ServerShuttingDown
from serving.predictor import Predictor
from serving.schemas import HealthResponse, error_responses

router = APIRouter()


@router.get("/health", summary="Liveness")
async def health() -> HealthResponse:
    """Always 200 while the process is up."""
    return HealthResponse(status="ok")


@router.get("/ready", summary="Readiness", responses=error_responses(503))
async def ready(
    request: Request, predictor: Annotated[Predictor, Depends(get_predictor)]
) -> HealthResponse:
    """200 once the model is loaded and no shutdown has begun; else 503 with the reason."""
    del predictor  # the dependency's check is the answer
    runner = request.app.state.runner
    if request.app.state.draining or (runner is not None and runner.draining):
        raise ServerShuttingDown(SHUTTING_DOWN)
    return HealthResponse(status="ready")
