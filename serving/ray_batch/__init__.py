"""``khabar predict --engine ray``: batch analysis over a Ray cluster, same results as local.

- ``inputs``: which files a run reads, their partitions of records (read with the local
  engine's readers) and the token-sized batches they are packed into; no Ray needed.
- ``output``: the output directory, its partition files (JSON lines or Parquet), written
  atomically, and the manifest that ``--resume`` trusts; no Ray needed.
- ``engine``: the Ray Data pipeline (read -> analyse on an actor pool -> write) and the
  command's report. Ray is imported only there, and only when the engine runs, so
  ``khabar predict`` works without the ``ray`` extra.
"""
