"""Content codings of rewritten responses: decode what the upstream sent, encode what the client accepts.

Streaming both ways: a decoder and an encoder per response, fed chunk by
chunk; the encoder flushes at each chunk so the client gets output as it
comes. Levels are fast ones: rewritten HTML is compressed per visitor, never
cached by us.
"""

from __future__ import annotations

import zlib
from typing import Protocol

import brotli
import zstandard

DECODABLE = frozenset({b"gzip", b"x-gzip", b"deflate", b"br", b"zstd"})
#: our preference when the client accepts several (fastest for a good ratio first)
_PREFERENCE = (b"zstd", b"br", b"gzip")
GZIP_LEVEL = 4
BROTLI_QUALITY = 4
ZSTD_LEVEL = 3


class Coder(Protocol):
    def feed(self, data: bytes) -> bytes: ...
    def finish(self) -> bytes: ...


class CodingError(Exception):
    """The upstream body does not decode in its declared coding."""


class _ZlibDecoder:
    def __init__(self, wbits: int) -> None:
        self._obj = zlib.decompressobj(wbits)
        self._deflate = wbits == zlib.MAX_WBITS
        self._started = False

    def feed(self, data: bytes) -> bytes:
        try:
            if self._deflate and not self._started and data:
                self._started = True
                # "deflate" is meant to be zlib-wrapped, but some servers send raw deflate.
                if data[0] & 0x0F != 8:
                    self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
            return self._obj.decompress(data)
        except zlib.error as exc:
            raise CodingError(str(exc)) from exc

    def finish(self) -> bytes:
        try:
            return self._obj.flush()
        except zlib.error as exc:
            raise CodingError(str(exc)) from exc


class _BrotliDecoder:
    def __init__(self) -> None:
        self._obj = brotli.Decompressor()

    def feed(self, data: bytes) -> bytes:
        try:
            return bytes(self._obj.process(data))
        except brotli.error as exc:
            raise CodingError(str(exc)) from exc

    def finish(self) -> bytes:
        if not self._obj.is_finished():
            raise CodingError("brotli stream ends early")
        return b""


class _ZstdDecoder:
    def __init__(self) -> None:
        self._obj = zstandard.ZstdDecompressor().decompressobj()

    def feed(self, data: bytes) -> bytes:
        try:
            return bytes(self._obj.decompress(data))
        except zstandard.ZstdError as exc:
            raise CodingError(str(exc)) from exc

    def finish(self) -> bytes:
        return b""


def decoder(coding: bytes) -> Coder:
    if coding in (b"gzip", b"x-gzip"):
        return _ZlibDecoder(16 + zlib.MAX_WBITS)
    if coding == b"deflate":
        return _ZlibDecoder(zlib.MAX_WBITS)
    if coding == b"br":
        return _BrotliDecoder()
    if coding == b"zstd":
        return _ZstdDecoder()
    raise ValueError(f"no decoder for {coding!r}")


class _GzipEncoder:
    def __init__(self) -> None:
        self._obj = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> bytes:
        return self._obj.compress(data) + self._obj.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._obj.flush()


class _BrotliEncoder:
    def __init__(self) -> None:
        self._obj = brotli.Compressor(quality=BROTLI_QUALITY)

    def feed(self, data: bytes) -> bytes:
        return bytes(self._obj.process(data)) + bytes(self._obj.flush())

    def finish(self) -> bytes:
        return bytes(self._obj.finish())


class _ZstdEncoder:
    def __init__(self) -> None:
        self._obj = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()

    def feed(self, data: bytes) -> bytes:
        return bytes(self._obj.compress(data)) + bytes(self._obj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))

    def finish(self) -> bytes:
        return bytes(self._obj.flush())


def encoder(coding: bytes) -> Coder:
    if coding == b"gzip":
        return _GzipEncoder()
    if coding == b"br":
        return _BrotliEncoder()
    if coding == b"zstd":
        return _ZstdEncoder()
    raise ValueError(f"no encoder for {coding!r}")


def accepted(accept_encoding: bytes | None) -> frozenset[bytes]:
    """The codings of ours a client accepts (q=0 excludes; `*` accepts all)."""
    if not accept_encoding:
        return frozenset()
    out: set[bytes] = set()
    refused: set[bytes] = set()
    for item in accept_encoding.lower().split(b","):
        name, _, params = item.strip().partition(b";")
        name = name.strip()
        q = 1.0
        for param in params.split(b";"):
            key, _, value = param.strip().partition(b"=")
            if key == b"q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        target = refused if q <= 0 else out
        if name == b"*":
            target.update(_PREFERENCE)
        elif name in _PREFERENCE:
            target.add(name)
    return frozenset(out - refused)


def choose(accepted_codings: frozenset[bytes], upstream_coding: bytes | None) -> bytes | None:
    """The coding for the rewritten body: the upstream's own if the client takes it, else our preference."""
    if upstream_coding in accepted_codings:
        return upstream_coding
    for coding in _PREFERENCE:
        if coding in accepted_codings:
            return coding
    return None
