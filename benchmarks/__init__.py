"""Benchmarks: accuracy, speed and memory of khabar's engines, measured side by side.

Run ``python -m benchmarks.run --help``. Nothing here is imported by ``serving`` or
``training``; CI tests the helpers in ``tests/benchmarks`` and never runs a benchmark.
"""
