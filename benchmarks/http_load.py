"""The HTTP engine: ``khabar serve`` in its own process, driven over loopback.

Starting and stopping the server, waiting for ``/v1/ready``, and an asyncio driver that
keeps a given number of requests in flight and records every latency and status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.machine import child_env, log_tail, vmhwm_mb
from benchmarks.settings import READY_TIMEOUT_S, REPO_ROOT, Event
from benchmarks.stats import percentiles

if TYPE_CHECKING:
    pass


def free_port() -> int:
    """A TCP port that was free a moment ago on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_command(model_dir: Path, port: int, threads: int, batch_size: int) -> list[str]:
    """``khabar serve`` from this interpreter's environment."""
    script = Path(sys.executable).parent / "khabar"
    prefix = [str(script)] if script.is_file() else [sys.executable, "-m", "khabar_cli.app"]
    return prefix + [
        "serve",
        "--model",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--threads",
        str(threads),
        "--batch-size",
        str(batch_size),
        "--log-level",
        "warning",
    ]


def stop_process(process: subprocess.Popen[Any], grace_s: float = 15.0) -> None:
    """SIGINT (uvicorn's graceful shutdown), then SIGTERM, then SIGKILL."""
    if process.poll() is not None:
        return
    for send, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, 5.0)):
        process.send_signal(send)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
    process.kill()
    process.wait()


def wait_ready(base_url: str, process: subprocess.Popen[Any], timeout_s: float) -> None:
    """Poll ``/v1/ready`` until 200.

    Raises:
        RuntimeError: The server exited or was not ready in time.
    """
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/v1/ready", timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the server was not ready after {timeout_s:.0f} s")


async def drive(
    url: str,
    texts: Sequence[str],
    concurrency: int,
    requests: int,
    time_cap: float,
    on_done: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Closed-loop load over loopback that stops by itself.

    ``concurrency`` clients each send one article per request and wait for the answer
    before sending the next, until ``requests`` have been sent or ``time_cap`` seconds
    have passed (requests in flight then still finish, bounded by the client timeout).
    """
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    started = time.perf_counter()
    deadline = started + time_cap
    capped = False
    timeout = httpx.Timeout(max(60.0, 4 * time_cap))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal sent, capped
        while sent < requests:
            if time.perf_counter() > deadline:
                capped = True
                return
            index = sent
            sent += 1
            begin = time.perf_counter()
            try:
                response = await client.post(url, json={"text": texts[index % len(texts)]})
                status = str(response.status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            if status == "200":
                latencies.append(1000 * (time.perf_counter() - begin))
            else:
                errors[status] = errors.get(status, 0) + 1
            if on_done is not None:
                on_done(len(latencies) + sum(errors.values()))

    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "sent": sent,
        "ok": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "seconds": seconds,
        "docs_per_s": len(latencies) / seconds if seconds else None,
        **{f"{k}_ms": v for k, v in percentiles(latencies).items()},
        "mean_ms": float(np.mean(latencies)) if latencies else None,
        "capped": capped,
    }


def measure_http(
    options: argparse.Namespace, texts: Sequence[str], scratch: Path, on_event: Event
) -> dict[str, Any]:
    """Start ``khabar serve``, load it at each concurrency level, read VmHWM, stop it."""
    from serving.api.settings import ServerSettings
    from serving.metadata import ModelMetadata

    metadata = ModelMetadata.load(options.model)
    model_file = options.model / metadata.onnx_files[metadata.default_variant]
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = scratch / "http-server.log"
    command = serve_command(options.model, port, options.threads, options.batch_size)
    result: dict[str, Any] = {
        "status": "ok",
        "model_file": model_file.name,
        "model_mb": model_file.stat().st_size / 1e6,
        "threads": options.threads,
        "command": " ".join(command),
        # What the server reads: these options on top of KHABAR_* variables and defaults.
        "server_settings": ServerSettings(
            model_dir=options.model, threads=options.threads, batch_size=options.batch_size
        ).model_dump(mode="json"),
        "levels": {},
    }
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            on_event(event="progress", phase="start server", done=0, total=1)
            started = time.perf_counter()
            wait_ready(base_url, process, READY_TIMEOUT_S)
            result["load_s"] = time.perf_counter() - started
            url = f"{base_url}/v1/analyze"
            asyncio.run(drive(url, texts, 1, min(2, len(texts)), options.time_cap))  # warm-up
            for level in options.concurrency:

                def done(count: int, level: int = level) -> None:
                    on_event(
                        event="progress",
                        phase=f"http c={level}",
                        done=count,
                        total=options.http_requests,
                    )

                result["levels"][str(level)] = asyncio.run(
                    drive(url, texts, level, options.http_requests, options.time_cap, done)
                )
            result["peak_rss_mb"] = vmhwm_mb(process.pid)
        except Exception as exc:
            result = {"status": "error", "note": f"{exc} | server log: {log_tail(log_path)}"}
        finally:
            stop_process(process)
    return result
