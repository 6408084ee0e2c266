"""Accuracy, speed and memory of every khabar engine, side by side, in one run.

Engines, each measured on the same documents and the same machine:

* ``torch-fp32``: the fine-tuned checkpoint of a training run in PyTorch, through the
  serving :class:`~serving.predictor.Predictor` (same windows, same decoding).
* ``bert-base-fp32``: a BERT-base sized encoder (the size of the CAMeL Tools and AraBERT
  models) with random weights, our vocabulary and our heads: only its speed means anything.
* ``onnx-fp32`` and ``onnx-int8``: the exported model directory (int8 is what ships).
* ``http-int8``: ``khabar serve`` in its own process, driven over loopback with one
  article per request at several concurrency levels.

``--load`` runs the reliability mode instead (:mod:`benchmarks.load`): the throughput
cost of answers independent of batch mates, and a long loopback run of ``khabar serve``
(10,000 requests at concurrency 32 by default) with every status, latency percentiles
and the server's RSS.

Each in-process engine runs in a subprocess of its own (this module with ``--worker``),
so its peak RSS is its own and a crash or a hang costs one engine, not the run. Workers
report progress and results as JSON lines on stdout.

The workload is the held-out test split of the model's own recipe: a seeded,
length-stratified sample of ANT test articles, and ANERcorp test sentences.

The command line is :mod:`benchmarks.cli`; the modules it drives are ``settings``,
``workload``, ``engines``, ``http_load``, ``machine``, ``stats``, ``suite`` and ``report``.

>>> main(["--quick"])  # doctest: +SKIP
"""

from __future__ import annotations

import sys

from benchmarks.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
