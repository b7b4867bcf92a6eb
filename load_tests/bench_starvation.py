#!/usr/bin/env python3
"""Issue 17's acceptance: one abusive address must not starve the others, and an endless header costs little.

What: a local upstream (aiohttp, a thread) and a consentproxy process in front of it, with its default
limits. From 127.0.0.2, ``--uploads`` connections each announce a 1,000-byte POST body and then send one byte
every 2 s, and ``--headers`` connections each send a request head one byte every 2 s. Meanwhile a normal
client at 127.0.0.1 asks for a page every 50 ms on a new connection and records how long each answer
takes. Then ``--endless`` connections each send ``X-Big:`` and 1 MiB without a line end; the proxy's
resident memory (the process and its workers, from /proc) is read before and after.

Prints: the normal client's latency (p50, p99, max) and failures; what the abusive connections got (429,
408, 503, closed, still open); the endless-header answers and the memory growth per connection.
Loopback only; stops by itself. Run: .venv/bin/python load_tests/bench_starvation.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

LOAD_TESTS = Path(__file__).resolve().parent
for _path in (str(LOAD_TESTS), str(LOAD_TESTS.parent / "tests")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from aiohttp import web  # noqa: E402
from conftest import free_port, launch_proxy, serve_app, site_toml  # noqa: E402

ATTACKER = "127.0.0.2"


def upstream_app() -> web.Application:
    async def page(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="<p>ok</p>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    return app


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (the workers), in KiB."""
    total = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for each in pids:
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


async def trickle(port: int, head: bytes, outcome: Counter[str], stop: asyncio.Event) -> None:
    """One abusive connection: `head` at once, then a byte every 2 s; what it was answered, if anything."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(ATTACKER, 0))
    except OSError:
        outcome["connect failed"] += 1
        return
    try:
        writer.write(head)
        answer = asyncio.ensure_future(reader.read(64))
        while not stop.is_set():
            done, _ = await asyncio.wait({answer}, timeout=2)
            if done:
                first = answer.result()
                outcome[first.split(b"\r\n", 1)[0].decode("latin-1", "replace")[9:12] or "closed"] += 1
                return
            writer.write(b"a")
            await writer.drain()
        answer.cancel()
        outcome["still open"] += 1
    except OSError:
        outcome["closed"] += 1
    finally:
        writer.close()


async def normal_client(port: int, seconds: float, latencies: list[float], failures: Counter[str]) -> None:
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
            writer.write(request)
            data = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            if data.startswith(b"HTTP/1.1 200"):
                latencies.append(time.perf_counter() - started)
            else:
                failures[data[:12].decode("latin-1", "replace") or "empty"] += 1
        except (OSError, TimeoutError) as exc:
            failures[type(exc).__name__] += 1
        await asyncio.sleep(0.05)


async def endless_headers(port: int, count: int, pid: int) -> tuple[Counter[str], int]:
    before = rss_kib(pid)
    answers: Counter[str] = Counter()

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answer = asyncio.ensure_future(reader.read(64))
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
            for _ in range(256):  # 1 MiB without a line end, or until the proxy answers
                if answer.done():
                    break
                writer.write(b"v" * 4096)
                await writer.drain()
                await asyncio.sleep(0)  # lets an answer that came in be read
        except OSError:
            pass  # the proxy closed: its answer may be here all the same
        try:
            first = await asyncio.wait_for(answer, 15)
            answers[first[9:12].decode("latin-1") or "closed"] += 1
        except (OSError, TimeoutError):
            answers["no answer"] += 1
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(count)))
    return answers, rss_kib(pid) - before


async def run(args: argparse.Namespace) -> int:
    port = free_port()
    with tempfile.TemporaryDirectory() as base, serve_app(upstream_app(), port):
        proxy = launch_proxy(Path(base), 0, site_toml("main", f"http://127.0.0.1:{port}"))
        try:
            stop = asyncio.Event()
            outcome: Counter[str] = Counter()
            upload = b"POST /up HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n"
            slow_head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
            abusers = [asyncio.ensure_future(trickle(proxy.port, upload, outcome, stop)) for _ in range(args.uploads)]
            abusers += [asyncio.ensure_future(trickle(proxy.port, slow_head, outcome, stop))
                        for _ in range(args.headers)]
            await asyncio.sleep(1)
            latencies: list[float] = []
            failures: Counter[str] = Counter()
            await normal_client(proxy.port, args.seconds, latencies, failures)
            stop.set()
            await asyncio.gather(*abusers)
            answers, growth = await endless_headers(proxy.port, args.endless, proxy.process.pid)
        finally:
            proxy.stop()
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")
    print(f"{args.uploads} slow uploads and {args.headers} slow header senders from {ATTACKER}; "
          f"a normal client at 127.0.0.1 for {args.seconds:.0f} s:")
    print(f"  normal client: {len(latencies)} pages, p50 {statistics.median(ordered) * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms; failures {dict(failures) or 0}")
    print(f"  abusive connections: {dict(outcome)}")
    print(f"{args.endless} endless header values (1 MiB, no line end): answers {dict(answers)}, "
          f"resident memory {growth / 1024:+.1f} MiB ({growth / max(args.endless, 1):+.0f} KiB a connection)")
    return 0 if ordered and not failures else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--uploads", type=int, default=1000)
    parser.add_argument("--headers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--endless", type=int, default=20)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
