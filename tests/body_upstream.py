"""A test upstream that decides every byte, every write and every pause of a page it serves.

Run as its own process (`python tests/body_upstream.py --port N`); it prints `ready` when it listens.
Raw asyncio streams, no HTTP library: the framing, the size of each write and the time between
writes are exactly what the URL asks for, so a run is reproducible from its URL alone.

    GET /<page>?framing=F&coding=C&pieces=LO-HI&pause=LO-HI&pause_p=P&drop=N&seed=S

- page: a corpus page by name without `.html.gz` (tests/data/real-pages), served as
  `text/html; charset=utf-8`;
- framing: `length` (a correct Content-Length), `chunked`, `short-length` (a Content-Length for the
  whole body, then the connection closed `drop` bytes early) or `no-terminator` (chunked, the
  connection closed `drop` bytes early and without the last 0-chunk, so drop=0 sends every byte);
- coding: `identity`, `gzip`, `br` or `zstd` (Content-Encoding set whatever the request asked);
- drop with framing `length` or `chunked`: the encoded body loses its last `drop` bytes and the
  framing is correct for what is sent (a compressed stream cut short, delivered cleanly);
- pieces: the body goes out in pieces of LO..HI bytes (each its own write, drained, and its own
  chunk when chunked); absent, in one write together with the head;
- pause, pause_p: after a piece, with probability P (default 1), a pause of LO..HI milliseconds
  (decimals allowed);
- csp=1: with a Content-Security-Policy header (CSP) that makes the proxy add nonces of its own;
- seed: the seed of the piece sizes and pauses.

Connections are kept alive unless the request asks to close, or the response ended early on purpose.
`/_ready` answers 200.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import random
import zlib
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import brotli
import zstandard

PAGES = Path(__file__).resolve().parent / "data" / "real-pages"
CODINGS = ("identity", "gzip", "br", "zstd")
FRAMINGS = ("length", "chunked", "short-length", "no-terminator")
#: a policy of hashes and 'strict-dynamic': the proxy puts a fresh nonce in it and on what it injects
CSP = ("script-src 'self' 'strict-dynamic' 'sha256-B2yPHKaXnvFWtRChIbabYmUBFZdVfKKXHbWtWidDVF8='; "
       "style-src 'self' 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='")

_pages: dict[str, bytes] = {}
_encoded: dict[tuple[str, str], bytes] = {}


def page(name: str) -> bytes:
    """The corpus page's HTML (decompressed from its .html.gz)."""
    found = _pages.get(name)
    if found is None:
        found = _pages[name] = gzip.decompress((PAGES / f"{name}.html.gz").read_bytes())
    return found


def encode(data: bytes, coding: str) -> bytes:
    if coding == "identity":
        return data
    if coding == "gzip":
        compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return compressor.compress(data) + compressor.flush()
    if coding == "br":
        return bytes(brotli.compress(data, quality=5))
    if coding == "zstd":
        return zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data)
    raise ValueError(coding)


def body_of(name: str, coding: str) -> bytes:
    key = (name, coding)
    found = _encoded.get(key)
    if found is None:
        found = _encoded[key] = encode(page(name), coding)
    return found


def _span(text: str | None, default: tuple[int, int]) -> tuple[int, int]:
    if not text:
        return default
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def _float_span(text: str | None) -> tuple[float, float]:
    if not text:
        return 0.0, 0.0
    low, _, high = text.partition("-")
    return float(low), float(high or low)


class Plan:
    """One response as the URL describes it."""

    def __init__(self, target: str) -> None:
        url = urlsplit(target)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        self.name = unquote(url.path.lstrip("/"))
        self.framing = query.get("framing", "length")
        self.coding = query.get("coding", "identity")
        if self.framing not in FRAMINGS or self.coding not in CODINGS:
            raise ValueError(target)
        self.pieces = _span(query["pieces"], (1, 1)) if "pieces" in query else None
        self.pause = _float_span(query.get("pause"))
        self.pause_p = float(query.get("pause_p", "1"))
        self.drop = int(query.get("drop", "0"))
        self.csp = query.get("csp") == "1"
        self.random = random.Random(int(query.get("seed", "0")))

    def sizes(self, total: int) -> list[int]:
        if self.pieces is None:
            return [total] if total else []
        low, high = self.pieces
        out = []
        while total > 0:
            size = min(total, self.random.randint(low, high))
            out.append(size)
            total -= size
        return out

    def pause_s(self) -> float:
        low, high = self.pause
        if high <= 0 or self.random.random() >= self.pause_p:
            return -1.0
        return self.random.uniform(low, high) / 1000


async def respond(writer: asyncio.StreamWriter, plan: Plan) -> bool:
    """Send the response; False when the connection must close (the response ended early on purpose)."""
    full = body_of(plan.name, plan.coding)
    cut_early = plan.framing in ("short-length", "no-terminator")
    body = full if cut_early else full[:len(full) - plan.drop]
    head = ["HTTP/1.1 200 OK", "Content-Type: text/html; charset=utf-8", "Cache-Control: no-store"]
    if plan.coding != "identity":
        head.append(f"Content-Encoding: {plan.coding}")
    if plan.csp:
        head.append(f"Content-Security-Policy: {CSP}")
    chunked = plan.framing in ("chunked", "no-terminator")
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}")
    if cut_early:
        head.append("Connection: close")
        body = body[:len(body) - plan.drop]
    head_bytes = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")

    position = 0
    first = True
    for size in plan.sizes(len(body)):
        piece = body[position:position + size]
        position += size
        framed = b"%x\r\n%s\r\n" % (size, piece) if chunked else piece
        writer.write(head_bytes + framed if first else framed)
        first = False
        await writer.drain()
        pause = plan.pause_s()
        if pause >= 0:
            await asyncio.sleep(pause)
    if first:
        writer.write(head_bytes)
    if chunked and not cut_early:
        writer.write(b"0\r\n\r\n")
    await writer.drain()
    return not cut_early


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split(" ")
            target = parts[1] if len(parts) == 3 else "/"
            if target == "/_ready":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                continue
            try:
                plan = Plan(target)
                body_of(plan.name, plan.coding)
            except (ValueError, KeyError, OSError) as exc:
                message = f"bad request: {exc}".encode()
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(message), message))
                await writer.drain()
                continue
            if not await respond(writer, plan) or b"\r\nconnection: close\r\n" in head.lower():
                return
    except (ConnectionError, OSError):
        return
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", port, limit=1 << 16)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
