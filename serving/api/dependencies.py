"""``Depends`` helpers shared by the routers.

Routes never call the predictor's encoder themselves: they tokenise, then hand the
work to the app's :class:`~serving.api.runner.InferenceRunner`, whose one worker
thread runs every request's encoder calls in fair turns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

from serving.errors import ModelLoadError

if TYPE_CHECKING:
    from serving.api.metrics import Metrics
    from serving.api.runner import InferenceRunner
    from serving.api.settings import ServerSettings
    from serving.predictor import Predictor

NOT_LOADED_YET = "the model is still loading; retry when GET /v1/ready returns 200"


def get_settings(request: Request) -> ServerSettings:
    """The app's settings."""
    return request.app.state.settings


def get_metrics(request: Request) -> Metrics:
    """The app's Prometheus metrics."""
    return request.app.state.metrics


def get_predictor(request: Request) -> Predictor:
    """The loaded predictor.

    Raises:
        ModelLoadError: The model is still loading or failed to load (503).
    """
    predictor = request.app.state.predictor
    if predictor is None:
        raise ModelLoadError(model_not_ready_message(request))
    return predictor


def get_runner(request: Request) -> InferenceRunner:
    """The inference runner of the loaded predictor.

    Raises:
        ModelLoadError: The model is still loading or failed to load (503).
    """
    runner = request.app.state.runner
    if runner is None:
        raise ModelLoadError(model_not_ready_message(request))
    return runner


def model_not_ready_message(request: Request) -> str:
    """Why there is no model: the load error if loading failed, else still loading."""
    load_error = request.app.state.load_error
    if load_error:
        return f"the model failed to load: {load_error}"
    return NOT_LOADED_YET
