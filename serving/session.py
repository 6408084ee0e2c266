"""OnnxSession: one onnxruntime session, looked up by the graph's input and output names."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from serving.errors import InferenceError, ModelLoadError

logger = logging.getLogger(__name__)

ENTITY_OUTPUT = "entity_logits"
TOPIC_OUTPUT = "topic_logits"


def default_threads() -> int:
    """Intra-op threads: the CPUs this process may use, capped at 8 (more rarely helps)."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(available, 8))


def stoppable_run_options() -> Any:
    """``onnxruntime.RunOptions`` whose ``terminate = True`` stops a call in progress."""
    import onnxruntime as ort

    return ort.RunOptions()


class OnnxSession:
    """An encoder with an entity head, a topic head or both, as an ONNX graph."""

    # run() takes run_options, through which another thread can stop a call.
    stoppable = True

    def __init__(self, path: Path, threads: int | None = None) -> None:
        """Load ``path`` with ``threads`` intra-op threads.

        Raises:
            ModelLoadError: The file is missing or not a loadable ONNX model.
        """
        import onnxruntime as ort

        if not path.is_file():
            raise ModelLoadError(f"ONNX file not found: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelLoadError(f"cannot load ONNX model {path}: {message}") from exc
        self.path = path
        self.threads = options.intra_op_num_threads
        self.input_names = {i.name for i in self._session.get_inputs()}
        self.output_names = [o.name for o in self._session.get_outputs()]
        missing = {"input_ids", "attention_mask"} - self.input_names
        if missing:
            raise ModelLoadError(f"ONNX model {path} lacks inputs {sorted(missing)}")

    def run(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, run_options: Any = None
    ) -> dict[str, np.ndarray]:
        """Run one padded batch; returns every graph output by name.

        Args:
            input_ids: ``[batch, length]`` token ids.
            attention_mask: ``[batch, length]``, 1 for real tokens.
            run_options: An ``onnxruntime.RunOptions``; setting its ``terminate`` from
                another thread stops the call (see :func:`stoppable_run_options`).

        Raises:
            InferenceError: onnxruntime failed on this batch, or was stopped.
        """
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        try:
            outputs = self._session.run(self.output_names, feeds, run_options)
        except Exception as exc:
            raise InferenceError(f"inference failed: {str(exc).splitlines()[0]}") from exc
        return dict(zip(self.output_names, outputs, strict=True))
