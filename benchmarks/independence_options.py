"""Side by side: ways to make an int8 model's answers independent of batch mates.

The shipped int8 graph quantises every activation with one scale and zero point per
tensor (``DynamicQuantizeLinear``), computed over the whole batch, so the documents
batched with a window change its scores. Measured here, on the same documents and the
same machine, in alternating rounds (best round kept):

* ``mixed``: windows of all documents sorted by length and batched together (the
  earlier behaviour; batch-dependent, the baseline for speed);
* ``per-document``: each batch holds windows of one document (what khabar does);
* ``per-window``: every window alone, a batch of one;
* ``per-row``: the graph rewritten to quantise activations per token (symmetric, one
  scale per row, zero point 128) so rows never share a scale, with every
  ``QAttention`` replaced by ``MatMulInteger`` + ``MultiHeadAttention`` (its input
  scale must be a scalar); onnxruntime's ``MatMulIntegerToFloat`` fusion is switched
  off for it, because that fusion assumes a per-tensor scale and gives wrong results.

For each: documents per second on articles and on sentences, and how many documents'
answers (at the API's rounding) differ between the document alone and in a batch of
16 mixed documents.

Needs the ``onnx`` package (the train extra). Not part of the serving runtime.

>>> python -m benchmarks.independence_options --articles 48 --sentences 96  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.load import analyze_mixed
from benchmarks.settings import DEFAULT_CACHE, DEFAULT_MODEL
from benchmarks.workload import config_of, held_out, sample_workload

ROW_QUANT_SUFFIX = "_rowq"


def per_row_graph(path: Path, mask_name: str) -> bytes:
    """The int8 graph at ``path`` with per-token activation quantisation, serialised."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    constants = [
        numpy_helper.from_array(np.array(1.0, np.float32), "rowq_one"),
        numpy_helper.from_array(np.array(127.0, np.float32), "rowq_127"),
        numpy_helper.from_array(np.array(1e-12, np.float32), "rowq_eps"),
        numpy_helper.from_array(np.array(128, np.uint8), "rowq_zero_point"),
    ]
    nodes = []
    for node in graph.node:
        name = node.name + ROW_QUANT_SUFFIX
        if node.op_type == "DynamicQuantizeLinear":
            x = node.input[0]
            quantised, scale, zero_point = node.output
            nodes += [
                helper.make_node("Abs", [x], [name + "_abs"]),
                helper.make_node(
                    "ReduceMax", [name + "_abs"], [name + "_max"], axes=[-1], keepdims=1
                ),
                helper.make_node("Max", [name + "_max", "rowq_eps"], [name + "_maxc"]),
                helper.make_node("Div", [name + "_maxc", "rowq_127"], [scale]),
                helper.make_node("Div", [x, scale], [name + "_div"]),
                helper.make_node(
                    "QuantizeLinear", [name + "_div", "rowq_one", "rowq_zero_point"], [quantised]
                ),
                helper.make_node("Identity", ["rowq_zero_point"], [zero_point]),
            ]
        elif node.op_type == "QAttention":
            x, weight, bias, x_scale, w_scale, _, x_zero, w_zero = list(node.input)[:8]
            heads = next(a.i for a in node.attribute if a.name == "num_heads")
            hidden = numpy_helper.to_array(initializers[bias]).shape[0] // 3
            constants.append(
                numpy_helper.from_array(np.array([hidden] * 3, np.int64), name + "_split")
            )
            nodes += [
                helper.make_node("MatMulInteger", [x, weight, x_zero, w_zero], [name + "_mm"]),
                helper.make_node("Cast", [name + "_mm"], [name + "_f"], to=TensorProto.FLOAT),
                helper.make_node("Mul", [x_scale, w_scale], [name + "_scales"]),
                helper.make_node("Mul", [name + "_f", name + "_scales"], [name + "_y"]),
                helper.make_node("Add", [name + "_y", bias], [name + "_qkv"]),
                helper.make_node(
                    "Split",
                    [name + "_qkv", name + "_split"],
                    [name + "_q", name + "_k", name + "_v"],
                    axis=-1,
                ),
                helper.make_node(
                    "MultiHeadAttention",
                    [name + "_q", name + "_k", name + "_v", "", mask_name],
                    list(node.output),
                    domain="com.microsoft",
                    num_heads=heads,
                ),
            ]
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(constants)
    return model.SerializeToString()


def attention_mask_int32(path: Path) -> str:
    """The name of the int32 attention mask the exported graph already computes."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    for node in graph.node:
        if node.op_type == "Cast" and list(node.input) == ["attention_mask"]:
            return node.output[0]
    raise RuntimeError("no int32 cast of attention_mask in the graph")


def per_row_predictor(model_dir: Path, threads: int) -> Any:
    """The model with the per-row graph in place of its int8 file."""
    import onnxruntime as ort

    from serving.predictor import Predictor

    predictor = Predictor.load(model_dir, threads=threads)
    path = predictor.session.path
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    predictor.session._session = ort.InferenceSession(
        per_row_graph(path, attention_mask_int32(path)),
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=["MatMulIntegerToFloatFusion"],
    )
    return predictor


def differing(
    analyze_alone: Callable[[str], Any],
    analyze_batch: Callable[[Sequence[str]], list[Any]],
    texts: Sequence[str],
) -> int:
    """Documents whose answer alone differs from their answer in one batch of ``texts``."""
    together = analyze_batch(texts)
    return sum(
        analyze_alone(text).to_dict() != result.to_dict()
        for text, result in zip(texts, together, strict=True)
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Measure every option and print a Markdown table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.independence_options")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--articles", type=int, default=48)
    parser.add_argument("--sentences", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    options = parser.parse_args(argv)

    from serving.predictor import Predictor

    config = config_of(options.model, None)
    data = held_out(config, DEFAULT_CACHE)
    workload = sample_workload(data, options.articles, options.sentences, options.seed)
    kinds = {
        "articles": [a["text"] for a in workload["articles"]],
        "sentences": [" ".join(s["tokens"]) for s in workload["sentences"]],
    }
    plain = Predictor.load(options.model, threads=options.threads)
    row = per_row_predictor(options.model, options.threads)
    size = options.batch_size

    def chunked(analyze: Callable[[Sequence[str]], list[Any]]) -> Callable[[Sequence[str]], Any]:
        def go(texts: Sequence[str]) -> list[Any]:
            out: list[Any] = []
            for start in range(0, len(texts), 64):
                out += analyze(texts[start : start + 64])
            return out

        return go

    approaches: dict[str, tuple[Callable[[Sequence[str]], list[Any]], Callable[[str], Any]]] = {
        "mixed": (
            chunked(lambda t: analyze_mixed(plain, t, size)),
            lambda text: analyze_mixed(plain, [text], size)[0],
        ),
        "per-document": (
            chunked(lambda t: plain.analyze(t, batch_size=size)),
            lambda text: plain.analyze([text], batch_size=size)[0],
        ),
        "per-window": (
            chunked(lambda t: plain.analyze(t, batch_size=1)),
            lambda text: plain.analyze([text], batch_size=1)[0],
        ),
        "per-row": (
            chunked(lambda t: analyze_mixed(row, t, size)),
            lambda text: analyze_mixed(row, [text], size)[0],
        ),
    }
    speed: dict[str, dict[str, list[float]]] = collections.defaultdict(
        lambda: collections.defaultdict(list)
    )
    for approach, (batch, _) in approaches.items():
        batch(kinds["sentences"][:8])  # warm-up
        del approach
    for round_ in range(options.rounds):
        for approach, (batch, _) in approaches.items():
            for kind, texts in kinds.items():
                started = time.perf_counter()
                batch(texts)
                speed[approach][kind].append(len(texts) / (time.perf_counter() - started))
        print(f"round {round_ + 1} of {options.rounds} done", file=sys.stderr)
    probe = kinds["articles"][:8] + kinds["sentences"][:8]
    figures: dict[str, Any] = {}
    for approach, (batch, alone) in approaches.items():
        figures[approach] = {
            "articles_docs_per_s": max(speed[approach]["articles"]),
            "sentences_docs_per_s": max(speed[approach]["sentences"]),
            "differ_alone_vs_batch_of_16": differing(alone, batch, probe),
        }
    base = figures["mixed"]
    print("| approach | articles docs/s | sentences docs/s | differ alone vs in 16 |")
    print("|---|--:|--:|--:|")
    for approach, values in figures.items():
        print(
            f"| {approach} | {values['articles_docs_per_s']:.2f} "
            f"({values['articles_docs_per_s'] / base['articles_docs_per_s']:.2f}×) "
            f"| {values['sentences_docs_per_s']:.2f} "
            f"({values['sentences_docs_per_s'] / base['sentences_docs_per_s']:.2f}×) "
            f"| {values['differ_alone_vs_batch_of_16']} of {len(probe)} |"
        )
    if options.json is not None:
        options.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
