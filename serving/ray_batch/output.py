"""The Ray engine's output directory: partition files, the manifest, and what is complete.

Each partition is one file, ``part-FFFFF-PPPPPP.jsonl`` (or ``.parquet``), holding one
record per input record in input order: the local engine's JSON object, or its
``{id, error}``. A file is written under a temporary name and renamed into place, then
the manifest (``manifest.json``, itself replaced atomically) records it with its counts.
A partition is complete when the manifest lists it and its file is there; ``--resume``
skips exactly those, so a run stopped at any moment loses only partitions in flight.

The manifest also records what the run was asked to do (inputs, fields, format,
partition size): ``--resume`` refuses a directory written for anything else, since its
partition keys would name other records.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.errors import InputError

MANIFEST_NAME = "manifest.json"
OUTPUT_FORMATS = ("jsonl", "parquet")


@dataclass(frozen=True)
class Counts:
    """Records of complete partitions: analysed, failed, and in how many partitions."""

    n_ok: int
    n_failed: int
    n_partitions: int

    @property
    def n_total(self) -> int:
        """All records of those partitions."""
        return self.n_ok + self.n_failed


def result_schema() -> Any:
    """The Arrow schema of a result record (``DocumentResult.to_dict``) or an error record."""
    import pyarrow as pa

    entity = pa.struct(
        [
            ("text", pa.string()),
            ("name", pa.string()),
            ("label", pa.string()),
            ("start", pa.int64()),
            ("end", pa.int64()),
            ("score", pa.float64()),
        ]
    )
    group = pa.struct(
        [
            ("name", pa.string()),
            ("label", pa.string()),
            ("mentions", pa.list_(pa.int64())),
            ("count", pa.int64()),
            ("first", pa.int64()),
            ("salience", pa.float64()),
        ]
    )
    topic = pa.struct([("label", pa.string()), ("score", pa.float64())])
    return pa.schema(
        [
            ("id", pa.string()),
            ("entities", pa.list_(entity)),
            ("entity_groups", pa.list_(group)),
            ("topics", pa.list_(topic)),
            ("topic_scores", pa.map_(pa.string(), pa.float64())),
            ("warnings", pa.list_(pa.string())),
            ("error", pa.string()),
        ]
    )


def write_parquet(path: Path, lines: Sequence[str]) -> None:
    """Write JSON-line records as Parquet; a field the schema lacks is a bug, not dropped."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = result_schema()
    records = [json.loads(line) for line in lines]
    unknown = {key for record in records for key in record} - set(schema.names)
    if unknown:
        raise ValueError(f"result fields missing from the Parquet schema: {sorted(unknown)}")
    pq.write_table(pa.Table.from_pylist(records, schema=schema), path)


def _replace_atomically(path: Path, write: Any) -> None:
    """Write through ``write(temporary_path)``, sync, then rename over ``path``."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        with temporary.open("rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class OutputDir:
    """An output directory being filled partition by partition.

    >>> out = OutputDir.open(Path("out"), job, resume=False)  # doctest: +SKIP
    >>> out.write_partition("00000-000000", "news.jsonl", lines, n_failed=0)  # doctest: +SKIP
    """

    def __init__(self, path: Path, job: Mapping[str, Any], partitions: dict[str, Any]) -> None:
        """Use :meth:`open`."""
        self.path = path
        self.job = dict(job)
        self.partitions = partitions

    @property
    def output_format(self) -> str:
        """``jsonl`` or ``parquet``."""
        return str(self.job["format"])

    @classmethod
    def open(cls, path: Path, job: Mapping[str, Any], resume: bool) -> OutputDir:
        """Create ``path`` or, with ``resume``, take up the run recorded in it.

        Args:
            path: The output directory.
            job: What the run reads and how (inputs, fields, format, partition size);
                ``job["format"]`` is the output format.
            resume: Keep the complete partitions of an earlier run of the same job.

        Raises:
            InputError: ``path`` is a file; holds another run's results without
                ``resume``; or was written for another job; or cannot be created.
        """
        manifest_path = path / MANIFEST_NAME
        if path.exists() and not path.is_dir():
            raise InputError(f"{path} is a file; --engine ray writes a directory of partitions")
        partitions: dict[str, Any] = {}
        if manifest_path.is_file():
            if not resume:
                raise InputError(
                    f"{path} holds the results of an earlier run: pass --resume to complete "
                    "it, or choose another directory"
                )
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            recorded = manifest.get("job") or {}
            if recorded != dict(job):
                differ = ", ".join(
                    sorted(key for key in {*recorded, *job} if recorded.get(key) != job.get(key))
                )
                raise InputError(
                    f"{path} was written by a run with other {differ}; --resume needs the same"
                )
            partitions = dict(manifest.get("partitions", {}))
        elif path.is_dir() and any(path.iterdir()):
            raise InputError(f"{path} is not empty and holds no {MANIFEST_NAME}: choose another")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create {path}: {exc.strerror or exc}") from exc
        return cls(path, job, partitions)

    def complete(self) -> frozenset[str]:
        """Keys of partitions recorded and present: what ``--resume`` skips."""
        return frozenset(
            key for key, entry in self.partitions.items() if (self.path / entry["file"]).is_file()
        )

    def counts(self) -> Counts:
        """Records of the complete partitions."""
        done = [self.partitions[key] for key in self.complete()]
        return Counts(
            n_ok=sum(entry["ok"] for entry in done),
            n_failed=sum(entry["failed"] for entry in done),
            n_partitions=len(done),
        )

    def write_partition(
        self, key: str, input_name: str, lines: Sequence[str], n_failed: int
    ) -> Path:
        """Write one complete partition's records (in order), then record it in the manifest."""
        path = self.path / f"part-{key}.{self.output_format}"
        if self.output_format == "parquet":
            _replace_atomically(path, lambda temporary: write_parquet(temporary, lines))
        else:
            text = "".join(line + "\n" for line in lines)
            _replace_atomically(
                path, lambda temporary: temporary.write_text(text, encoding="utf-8", newline="\n")
            )
        self.partitions[key] = {
            "file": path.name,
            "input": input_name,
            "records": len(lines),
            "ok": len(lines) - n_failed,
            "failed": n_failed,
        }
        self._write_manifest()
        return path

    def _write_manifest(self) -> None:
        counts = self.counts()
        manifest = {
            "job": self.job,
            "records": counts.n_total,
            "ok": counts.n_ok,
            "failed": counts.n_failed,
            "partitions": dict(sorted(self.partitions.items())),
        }
        text = json.dumps(manifest, ensure_ascii=False, indent=1) + "\n"
        _replace_atomically(
            self.path / MANIFEST_NAME,
            lambda temporary: temporary.write_text(text, encoding="utf-8"),
        )


class PartitionAssembler:
    """Batches coming back in any order; each partition is written when its last one is in.

    >>> assembler = PartitionAssembler(out)  # doctest: +SKIP
    >>> assembler.add("00000-000000", "a.jsonl", 1000, indices, lines, 0)  # doctest: +SKIP
    """

    def __init__(self, out: OutputDir) -> None:
        """Write into ``out``."""
        self.out = out
        self.n_ok = self.n_failed = self.n_partitions = 0
        self._lines: dict[str, list[tuple[int, str]]] = {}
        self._failed: dict[str, int] = {}

    def add(
        self,
        key: str,
        input_name: str,
        partition_records: int,
        indices: Sequence[int],
        lines: Sequence[str],
        n_failed: int,
    ) -> None:
        """One batch's output lines (``indices``: the records' places in their file)."""
        held = self._lines.setdefault(key, [])
        held.extend(zip(indices, lines, strict=True))
        self._failed[key] = self._failed.get(key, 0) + n_failed
        if len(held) < partition_records:
            return
        held.sort()
        failed = self._failed.pop(key)
        self.out.write_partition(key, input_name, [line for _, line in held], failed)
        del self._lines[key]
        self.n_failed += failed
        self.n_ok += len(held) - failed
        self.n_partitions += 1

    @property
    def incomplete(self) -> list[str]:
        """Partitions some of whose batches have not come back."""
        return sorted(self._lines)

    def counts(self) -> Counts:
        """Records of the partitions this assembler wrote."""
        return Counts(n_ok=self.n_ok, n_failed=self.n_failed, n_partitions=self.n_partitions)
