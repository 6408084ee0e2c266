"""``GET /v1/health`` (liveness) and ``GET /v1/ready`` (readiness).

Liveness answers 200 while the process can answer at all, so an orchestrator does
not restart a server that is only loading its model; readiness answers 503 until
the model is loaded, so no traffic reaches a server that cannot analyse.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from serving.api.dependencies import get_predictor
from serving.predictor import Predictor
from serving.schemas import HealthResponse, error_responses

router = APIRouter()


@router.get("/health", summary="Liveness")
async def health() -> HealthResponse:
    """Always 200 while the process is up."""
    return HealthResponse(status="ok")


@router.get("/ready", summary="Readiness", responses=error_responses(503))
async def ready(predictor: Annotated[Predictor, Depends(get_predictor)]) -> HealthResponse:
    """200 once the model is loaded; 503 with the reason while loading or after a failed load."""
    del predictor  # the dependency's check is the answer
    return HealthResponse(status="ready")
