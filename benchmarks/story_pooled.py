"""Option 2 for story embeddings: the fine-tuned encoder's own mean-pooled output.

The exported graph computes the mean-pooled last layer (``/model/Div_output_0``) for
its topic head but does not output it. ``pooled_encoder`` writes a copy of the graph
with that tensor as an extra output, and wraps it in the interface the story scorer
reads (``embed`` and ``info``), embedding each text's first window (title and lead).
In a shipped version this vector would come out of the one pass that already tags
entities and topics, so its cost is the pooling only; here it is a second pass, for
measurement.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from serving.predictor import Predictor
from serving.session import OnnxSession

POOLED_TENSOR = "/model/Div_output_0"
POOLED_OUTPUT = "pooled"


class PooledEncoder:
    """Texts -> unit vectors from the fine-tuned model's first window, mean-pooled."""

    def __init__(self, predictor: Predictor, session: OnnxSession, keep: Path) -> None:
        self.predictor = predictor
        self.session = session
        self._keep = keep  # the temporary directory holding the graph
        self.info = SimpleNamespace(size_mb=0.0, max_tokens=predictor.metadata.max_length)

    def embed(self, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
        """One unit vector per text."""
        prepared = self.predictor.prepare(texts)
        out = np.zeros((len(texts), 0), dtype=np.float32)
        rows = []
        for start in range(0, len(prepared), batch_size):
            chunk = prepared[start : start + batch_size]
            windows = [replace(p.windows[0], doc=i) for i, p in enumerate(chunk)]
            ids, mask = self.predictor.collate(chunk, windows)
            rows.append(self.session.run(ids, mask)[POOLED_OUTPUT])
        out = np.concatenate(rows) if rows else out
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def pooled_encoder(predictor: Predictor, threads: int | None = None) -> PooledEncoder:
    """A copy of the predictor's graph that also outputs its mean-pooled features."""
    import onnx

    assert predictor.model_dir is not None
    onnx_file = (
        predictor.model_dir / predictor.metadata.onnx_files[predictor.metadata.default_variant]
    )
    model = onnx.load(str(onnx_file))
    identity = onnx.helper.make_node("Identity", [POOLED_TENSOR], [POOLED_OUTPUT])
    model.graph.node.append(identity)
    model.graph.output.append(
        onnx.helper.make_tensor_value_info(POOLED_OUTPUT, onnx.TensorProto.FLOAT, ["batch", None])
    )
    keep = Path(tempfile.mkdtemp(prefix="khabar-pooled-"))
    path = keep / "pooled.onnx"
    onnx.save(model, str(path))
    return PooledEncoder(predictor, OnnxSession(path, threads=threads), keep)
