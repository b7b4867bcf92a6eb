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


class _Decoder:
    """A stream decoder that knows when its stream ended: a body is complete only when the decoder says so.

    A truncated body whose every byte decodes (a valid gzip stream minus its trailer, a brotli stream
    without its last meta-block, a zstd frame without its end) must not pass for a whole page. Members and
    frames may follow one another (gzip members, zstd frames; decoders such as curl's read them all);
    other bytes after a gzip, deflate or zstd end are ignored, as browsers do (brotli refuses them, as
    browsers do too). An empty body is complete.
    """

    #: the coding's name, for the error message
    NAME = ""
    #: the bytes that start a next member/frame of this coding (empty: the first stream is the only one)
    NEXT_MAGIC = b""

    def __init__(self) -> None:
        self._fed = False
        self._ended = False  # the current stream reached its end
        self._after = b""  # bytes after an ended stream, until we know whether a next one starts
        self._ignoring = False

    def _start(self) -> None:
        raise NotImplementedError

    def _process(self, data: bytes) -> tuple[bytes, bool, bytes]:
        """Decode `data`: (output, whether the stream ended, the bytes after its end)."""
        raise NotImplementedError

    def feed(self, data: bytes) -> bytes:
        if not data or self._ignoring:
            return b""
        self._fed = True
        out: list[bytes] = []
        while data:
            if self._ended:
                data = self._after + data
                magic = self.NEXT_MAGIC
                if not magic or not magic.startswith(data[: len(magic)]):
                    self._ignoring, self._after = True, b""
                    break
                if len(data) < len(magic):
                    self._after = data
                    break
                self._after, self._ended = b"", False
                self._start()
            decoded, self._ended, data = self._process(data)
            out.append(decoded)
        return b"".join(out)

    def finish(self) -> bytes:
        if self._fed and not self._ended and not self._ignoring:
            raise CodingError(f"the {self.NAME} stream ends early (its end is missing)")
        return b""


class _ZlibDecoder(_Decoder):
    NAME = "deflate"

    def __init__(self, wbits: int) -> None:
        super().__init__()
        self._wbits = wbits
        self._deflate = wbits == zlib.MAX_WBITS
        if not self._deflate:
            self.NAME, self.NEXT_MAGIC = "gzip", b"\x1f\x8b"
        self._started = False
        self._start()

    def _start(self) -> None:
        self._obj = zlib.decompressobj(self._wbits)

    def _process(self, data: bytes) -> tuple[bytes, bool, bytes]:
        try:
            if self._deflate and not self._started:
                self._started = True
                # "deflate" is meant to be zlib-wrapped, but some servers send raw deflate.
                if data[0] & 0x0F != 8:
                    self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._obj.decompress(data)
        except zlib.error as exc:
            raise CodingError(str(exc)) from exc
        if self._obj.eof:
            return out, True, self._obj.unused_data
        return out, False, b""


class _BrotliDecoder(_Decoder):
    NAME = "brotli"

    def __init__(self) -> None:
        super().__init__()
        self._start()

    def _start(self) -> None:
        self._obj = brotli.Decompressor()

    def _process(self, data: bytes) -> tuple[bytes, bool, bytes]:
        try:
            out = bytes(self._obj.process(data))
        except brotli.error as exc:  # bytes after the last meta-block too: browsers refuse them as well
            raise CodingError(str(exc)) from exc
        return out, self._obj.is_finished(), b""


class _ZstdDecoder(_Decoder):
    NAME = "zstd"
    NEXT_MAGIC = b"\x28\xb5\x2f\xfd"

    def __init__(self) -> None:
        super().__init__()
        self._start()

    def _start(self) -> None:
        self._obj = zstandard.ZstdDecompressor().decompressobj()

    def _process(self, data: bytes) -> tuple[bytes, bool, bytes]:
        try:
            out = bytes(self._obj.decompress(data))
        except zstandard.ZstdError as exc:
            raise CodingError(str(exc)) from exc
        if self._obj.eof:
            return out, True, self._obj.unused_data
        return out, False, b""


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
