"""Refit the section columns of an exported model's topic head on what serving reads.

The topic head is trained on the pooled states of each article's first
``topic_train_max_length`` tokens, but serving scores a whole article: the
length-weighted mean of the head over every window of the model's window plan, plus
the lexical head. When the window plan changes (windows of whole sentences, shorter
than the training windows), the head reads inputs it never saw. This step runs the
exported graph itself over every topic training article, window by window as
serving does, takes the pooled vector the head reads, and refits the head's section
columns on it (masked binary cross-entropy, the lexical logits added as they are in
serving). The dev split picks the number of passes, and whether the refit replaces
the old columns at all. Other columns (region, stories) keep their weights.

The refit head is written back into every ONNX variant of the model in float32 (a
384 x labels matrix: nothing to gain from int8), replacing the old head; features
come from the default variant, the one users run.

Run: ``khabar refit-sections MODEL_DIR --config configs/default.yaml``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serving.predictor import Predictor
from serving.session import TOPIC_OUTPUT, OnnxSession
from serving.windows import merge_document_scores
from training.config import UNCAPPED_TOPICS, load_config
from training.data.corpora import load_corpora
from training.data.topics import TopicExample
from training.evaluate import topic_probabilities, topic_targets, tune_thresholds

logger = logging.getLogger(__name__)

POOLED_OUTPUT = "topic_head_input"


def _producers(graph: Any) -> dict[str, Any]:
    return {output: node for node in graph.node for output in node.output}


def head_nodes(graph: Any) -> tuple[str, list[Any]]:
    """The pooled tensor the topic head reads, and the nodes from it to ``topic_logits``.

    The head is what lies between the mean pooling (a ``Div``) and the graph output:
    ``Gemm`` or ``MatMul`` + ``Add`` in float32, a dynamically quantised ``MatMulInteger``
    chain in int8.

    Raises:
        ValueError: The graph has no ``topic_logits`` fed by a mean-pooled vector.
    """
    producers = _producers(graph)
    if TOPIC_OUTPUT not in producers:
        raise ValueError(f"the graph has no {TOPIC_OUTPUT} output")
    pooled, stack, seen = None, [TOPIC_OUTPUT], set()
    nodes = []
    while stack:
        name = stack.pop()
        node = producers.get(name)
        if node is None or id(node) in seen:
            continue
        if node.op_type == "Div":  # the mean pooling: the head's input
            pooled = name
            continue
        seen.add(id(node))
        nodes.append(node)
        stack.extend(i for i in node.input if i)
        if len(nodes) > 16:
            break
    if pooled is None or len(nodes) > 16:
        raise ValueError(f"cannot find the pooled vector that feeds {TOPIC_OUTPUT}")
    return pooled, nodes


def read_head(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """The head's weights ``[hidden, labels]`` and bias ``[labels]``, dequantised to float32."""
    from onnx import numpy_helper

    _, nodes = head_nodes(model.graph)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    adds = [inits[i] for n in nodes if n.op_type == "Add" for i in n.input if i in inits]
    bias = adds[0] if adds else None
    for node in nodes:
        if node.op_type == "MatMulInteger":
            quantized, zero = inits[node.input[1]], inits[node.input[3]]
            scale = next(
                inits[i]
                for n in nodes
                if n.op_type == "Mul"
                for i in n.input
                if i in inits and i.endswith("_scale")
            )
            weights = (quantized.astype(np.float32) - zero.astype(np.float32)) * scale
            break
        if node.op_type in {"MatMul", "Gemm"}:
            weights = inits[node.input[1]]
            if node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute):
                weights = weights.T
            if node.op_type == "Gemm" and len(node.input) > 2:
                bias = inits[node.input[2]]
            break
    else:
        raise ValueError("cannot read the topic head's weights")
    if bias is None:
        bias = np.zeros(weights.shape[1], dtype=np.float32)
    return weights.astype(np.float32), bias.astype(np.float32)


def with_pooled_output(model: Any) -> Any:
    """A copy of the graph that also outputs the pooled vector as ``topic_head_input``."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    pooled, _ = head_nodes(copy.graph)
    copy.graph.node.append(onnx.helper.make_node("Identity", [pooled], [POOLED_OUTPUT]))
    copy.graph.output.append(
        onnx.helper.make_tensor_value_info(POOLED_OUTPUT, onnx.TensorProto.FLOAT, None)
    )
    return copy


def replace_head(model: Any, weights: np.ndarray, bias: np.ndarray) -> Any:
    """The graph with its topic head replaced by a float32 ``MatMul`` + ``Add``."""
    import onnx
    from onnx import numpy_helper

    pooled, nodes = head_nodes(model.graph)
    graph = model.graph
    dropped = {id(n) for n in nodes}
    kept_nodes = [n for n in graph.node if id(n) not in dropped]
    del graph.node[:]
    graph.node.extend(kept_nodes)
    used = {i for n in graph.node for i in n.input}
    kept_inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    graph.initializer.extend(
        [
            numpy_helper.from_array(weights.astype(np.float32), "topic_head.refit.weight"),
            numpy_helper.from_array(bias.astype(np.float32), "topic_head.refit.bias"),
        ]
    )
    graph.node.extend(
        [
            onnx.helper.make_node(
                "MatMul", [pooled, "topic_head.refit.weight"], ["topic_head.refit.matmul"]
            ),
            onnx.helper.make_node(
                "Add", ["topic_head.refit.matmul", "topic_head.refit.bias"], [TOPIC_OUTPUT]
            ),
        ]
    )
    onnx.checker.check_model(model)
    return model


def serving_features(
    predictor: Predictor,
    session: OnnxSession,
    examples: Sequence[TopicExample],
    show_progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Per article, what serving's topic merge averages: pooled vectors and lexical logits.

    Windows and their merge are the predictor's own (its window plan, one window per
    call, :func:`serving.windows.merge_document_scores`), so the features are exactly
    what the head reads when the model analyses the article.
    """
    from tqdm.auto import tqdm

    n_labels = len(predictor.metadata.topic_labels)
    pooled: list[np.ndarray] = []
    lexical: list[np.ndarray] = []
    chunk = 64
    for start in tqdm(
        range(0, len(examples), chunk), desc="features", disable=not show_progress, unit="chunk"
    ):
        prepared = predictor.prepare([e.text for e in examples[start : start + chunk]])
        for item in prepared:
            vectors = []
            for window in item.windows:
                input_ids, attention_mask = predictor.collate(prepared, [window])
                vectors.append(session.run(input_ids, attention_mask)[POOLED_OUTPUT][0])
            pooled.append(merge_document_scores(item.windows, vectors))
            if predictor.lexical is None:
                lexical.append(np.zeros(n_labels, dtype=np.float32))
            else:
                ids = [item.encoded.ids[w.start : w.end] for w in item.windows]
                lexical.append(
                    merge_document_scores(item.windows, [predictor.lexical.logits(i) for i in ids])
                )
    return np.stack(pooled).astype(np.float32), np.stack(lexical).astype(np.float32)


def fit_section_columns(
    train: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    dev: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    weights: np.ndarray,
    bias: np.ndarray,
    cols: list[int],
    seed: int,
    epochs: int = 40,
    learning_rate: float = 3e-3,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Refit ``cols`` of a linear head (features, lexical logits, targets, known mask each).

    Starts from the current columns; the pass with the best dev section accuracy (then
    loss) is kept, and pass 0 (the current columns) competes too.
    """
    import torch

    from training.refit import masked_bce, section_accuracy

    torch.manual_seed(seed)

    def tensors(split):
        return tuple(torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in split)

    (x, lex, y, m), (dx, dlex, dy, dm) = tensors(train), tensors(dev)
    col_index = torch.tensor(cols)
    w = torch.nn.Parameter(torch.from_numpy(weights[:, cols].copy()))
    b = torch.nn.Parameter(torch.from_numpy(bias[cols].copy()))
    optimizer = torch.optim.AdamW([w, b], lr=learning_rate, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)

    def logits(features, lexical):
        return features @ w + b + lexical[:, col_index]

    def loss_of(features, lexical, targets, mask):
        return masked_bce(logits(features, lexical), targets[:, col_index], mask[:, col_index])

    def dev_score() -> tuple[float, float]:
        with torch.no_grad():
            own = list(range(len(cols)))  # the section columns, in the order of ``cols``
            accuracy = section_accuracy(logits(dx, dlex), dy[:, col_index], dm[:, col_index], own)
            return accuracy, float(loss_of(dx, dlex, dy, dm))

    accuracy, loss = dev_score()
    best = (accuracy, -loss, 0, w.detach().clone(), b.detach().clone())
    history = [{"pass": 0, "section_accuracy": round(accuracy, 2), "loss": round(loss, 4)}]
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(order), 256):
            index = order[start : start + 256]
            batch_loss = loss_of(x[index], lex[index], y[index], m[index])
            optimizer.zero_grad()
            batch_loss.backward()
            optimizer.step()
        accuracy, loss = dev_score()
        history.append(
            {"pass": epoch, "section_accuracy": round(accuracy, 2), "loss": round(loss, 4)}
        )
        if (accuracy, -loss) > best[:2]:
            best = (accuracy, -loss, epoch, w.detach().clone(), b.detach().clone())
    new_weights, new_bias = weights.copy(), bias.copy()
    new_weights[:, cols] = best[3].numpy()
    new_bias[cols] = best[4].numpy()
    report = {
        "before": history[0],
        "after": {"section_accuracy": round(best[0], 2), "loss": round(-best[1], 4)},
        "chosen_pass": best[2],
        "history": history,
    }
    return new_weights, new_bias, report


def refit_section_head(
    model_dir: Path,
    config_path: Path,
    data_root: Path | None = None,
    threads: int | None = None,
    show_progress: bool = True,
    features_cache: Path | None = None,
) -> dict[str, Any]:
    """Refit the section columns of ``model_dir``'s graphs in place (see module doc).

    ``features_cache``: a directory where the pooled features of each split are kept,
    keyed by the model's files and window settings, so that refitting again (another
    learning rate, say) does not run the encoder over every article again.

    Returns:
        The report (dev section accuracy before and after, chosen pass, sizes), also
        recorded in ``khabar.json`` under ``training.section_head``.
    """
    import onnx

    config = load_config(config_path, list(UNCAPPED_TOPICS), data_root)
    if config.topics is None:
        raise ValueError(f"{config_path} has no topics")
    predictor = Predictor.load(model_dir, threads=threads)
    metadata = predictor.metadata
    onnx_name = metadata.onnx_files[metadata.default_variant]
    model = onnx.load(model_dir / onnx_name)
    weights, bias = read_head(model)
    corpora = load_corpora(config, with_test=False)
    labels = list(metadata.topic_labels)
    cols = [labels.index(s) for s in config.topics.sections]
    key = hashlib.sha256(
        json.dumps(
            [metadata.file_sha256, metadata.window_plan, metadata.max_length, metadata.stride],
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    splits = []
    with tempfile.TemporaryDirectory() as scratch:
        session = None
        for name, examples in (("train", corpora.topic_train), ("dev", corpora.topic_dev)):
            cached = None
            if features_cache is not None:
                cached = features_cache / f"{key}-{name}-{len(examples)}.npz"
            if cached is not None and cached.is_file():
                with np.load(cached) as arrays:
                    features, lexical = arrays["pooled"], arrays["lexical"]
                logger.info("features of %s read from %s", name, cached)
            else:
                if session is None:
                    path = Path(scratch) / "features.onnx"
                    onnx.save(with_pooled_output(model), path)
                    session = OnnxSession(path, threads=threads)
                features, lexical = serving_features(predictor, session, examples, show_progress)
                if cached is not None:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    np.savez(cached, pooled=features, lexical=lexical)
            targets, known = topic_targets(examples, labels)
            splits.append((features, lexical, targets, known))
    new_weights, new_bias, report = fit_section_columns(
        splits[0], splits[1], weights, bias, cols, config.training.seed
    )
    report.update(
        {
            "train_articles": len(corpora.topic_train),
            "dev_articles": len(corpora.topic_dev),
            "window_plan": metadata.window_plan,
            "max_length": metadata.max_length,
            "replaced": report["chosen_pass"] > 0,
        }
    )
    if report["replaced"]:
        digests = dict(metadata.file_sha256)
        for name in sorted(set(metadata.onnx_files.values())):
            graph = model if name == onnx_name else onnx.load(model_dir / name)
            onnx.save(replace_head(graph, new_weights, new_bias), model_dir / name)
            digests[name] = hashlib.sha256((model_dir / name).read_bytes()).hexdigest()
        metadata = metadata.model_copy(
            update={
                "file_sha256": digests,
                "training": {**metadata.training, "section_head": report},
            }
        )
    else:
        metadata = metadata.model_copy(
            update={"training": {**metadata.training, "section_head": report}}
        )
    metadata.save(model_dir)
    # The head's scores moved: thresholds are chosen again on dev, as export does.
    tuned = Predictor.load(model_dir, threads=threads)
    probabilities = topic_probabilities(tuned, corpora.topic_dev)
    thresholds = tune_thresholds(probabilities, corpora.topic_dev, labels)
    report["thresholds"] = {"before": dict(metadata.thresholds), "after": thresholds}
    metadata = metadata.model_copy(
        update={
            "thresholds": thresholds,
            "training": {**metadata.training, "section_head": report},
        }
    )
    metadata.save(model_dir)
    logger.info("section head: %s", {k: v for k, v in report.items() if k != "history"})
    return report
