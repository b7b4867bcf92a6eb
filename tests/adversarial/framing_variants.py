"""The request smuggling and framing variants: what public smuggling scanners (Burp's HTTP Request Smuggler,
smuggler.py, h2csmuggler's HTTP/1 part) send, and the framing edge cases of RFC 9112.

Each variant is raw bytes with `{v}` where its unique token goes (every request target names it), the
answers the client must get (statuses in order, and whether the proxy then closes), and the requests the
site must receive (method, path after `/{v}`, body), nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

H = "Host: localhost\r\n"
#: every variant's token has this many characters ("v" and six digits), so declared lengths can be computed
TOKEN_LENGTH = 7


def blen(text: str) -> int:
    """The length of `text` once its `{v}` are replaced by a token."""
    return len(text.replace("{v}", "v" * TOKEN_LENGTH))


@dataclass(frozen=True)
class Variant:
    name: str
    #: the bytes sent, `{v}` standing for the token; latin-1 text
    data: str
    #: the statuses the client gets, in order
    statuses: tuple[int, ...]
    #: True: the proxy closes after them; False: the connection stays usable (a probe is answered on it)
    closed: bool
    #: what the site receives: (method, path after /{v}, body)
    upstream: tuple[tuple[str, str, bytes], ...] = ()
    #: a known open bug: the issue item and what goes wrong (the test is xfail strict)
    bug: str = ""

    def render(self, token: str) -> bytes:
        return self.data.replace("{v}", token).encode("latin-1")


def refused(name: str, data: str, status: int = 400, bug: str = "") -> Variant:
    """Refused with `status`, the connection closed, nothing reaches the site."""
    return Variant(name, data, (status,), True, (), bug)


def post(te: str | None = None, cl: str | None = None, body: str = "", extra: str = "", path: str = "/p",
         version: str = "HTTP/1.1") -> str:
    lines = f"POST /{{v}}{path} {version}\r\n{H}{extra}"
    if te is not None:
        lines += te
    if cl is not None:
        lines += cl
    return lines + "\r\n" + body


SMUGGLED = f"GET /{{v}}/smuggled HTTP/1.1\r\n{H}\r\n"

# -- Transfer-Encoding obfuscations (TE.TE): the header lines scanners use to make one parser see chunked
#    and another not ---------------------------------------------------------------------------------------
TE_LINES: dict[str, str] = {
    "plain": "Transfer-Encoding: chunked\r\n",
    "lower": "transfer-encoding: chunked\r\n",
    "upper-value": "Transfer-Encoding: CHUNKED\r\n",
    "mixed-case": "TrAnSfEr-EnCoDiNg: cHuNkEd\r\n",
    "leading-space": "Transfer-Encoding:  chunked\r\n",
    "no-space": "Transfer-Encoding:chunked\r\n",
    "trailing-space": "Transfer-Encoding: chunked \r\n",
    "tab-value": "Transfer-Encoding:\tchunked\r\n",
    "xchunked": "Transfer-Encoding: xchunked\r\n",
    "chunkedx": "Transfer-Encoding: chunkedx\r\n",
    "chunked-identity": "Transfer-Encoding: chunked, identity\r\n",
    "identity-chunked": "Transfer-Encoding: identity, chunked\r\n",
    "chunked-chunked": "Transfer-Encoding: chunked, chunked\r\n",
    "gzip-chunked": "Transfer-Encoding: gzip, chunked\r\n",
    "chunked-gzip": "Transfer-Encoding: chunked, gzip\r\n",
    "trailing-tab": "Transfer-Encoding: chunked\t\r\n",
    "chunked-comma": "Transfer-Encoding: chunked,\r\n",
    "comma-chunked": "Transfer-Encoding: ,chunked\r\n",
    "quoted": 'Transfer-Encoding: "chunked"\r\n',
    "param": "Transfer-Encoding: chunked;q=1\r\n",
    "identity": "Transfer-Encoding: identity\r\n",
    "gzip": "Transfer-Encoding: gzip\r\n",
    "empty": "Transfer-Encoding: \r\n",
    "chunk": "Transfer-Encoding: chunk\r\n",
    "space-before-colon": "Transfer-Encoding : chunked\r\n",
    "tab-before-colon": "Transfer-Encoding\t: chunked\r\n",
    "vtab-before-colon": "Transfer-Encoding\x0b: chunked\r\n",
    "ff-before-colon": "Transfer-Encoding\x0c: chunked\r\n",
    "vtab-value": "Transfer-Encoding:\x0bchunked\r\n",
    "ff-value": "Transfer-Encoding:\x0cchunked\r\n",
    "nul-value": "Transfer-Encoding: chunked\x00\r\n",
    "nul-inside": "Transfer-Encoding: chu\x00nked\r\n",
    "cr-value": "Transfer-Encoding: chunked\r\r\n",
    "bare-lf-line": "Transfer-Encoding: chunked\n",
    "obs-fold": "Transfer-Encoding:\r\n chunked\r\n",
    "obs-fold-tab": "Transfer-Encoding:\r\n\tchunked\r\n",
    "folded-name": "X-Pad: x\r\n Transfer-Encoding: chunked\r\n",
    "leading-space-name": " Transfer-Encoding: chunked\r\n",
    "underscore-name": "Transfer_Encoding: chunked\r\n",
    "nonascii-value": "Transfer-Encoding: \xe7hunked\r\n",
    "x-prefixed": "X-Transfer-Encoding: chunked\r\n",
    "in-another-value": "X-Pad: x\rTransfer-Encoding: chunked\r\n",
    "twice": "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    "twice-identity": "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
    "twice-x": "Transfer-Encoding: x\r\nTransfer-Encoding: chunked\r\n",
    "twice-empty": "Transfer-Encoding: chunked\r\nTransfer-Encoding: \r\n",
}

#: the TE lines after which the proxy must still see an ordinary chunked body (OWS and case are allowed)
TE_CHUNKED = {"plain", "lower", "upper-value", "mixed-case", "leading-space", "no-space", "trailing-space",
              "tab-value"}
#: the TE lines that name no header the proxy may act on: an ordinary header, the body framed by what else
#: is there
TE_NOT_A_TE = {"underscore-name", "x-prefixed"}
#: chunked last, after codings the proxy does not implement: the body can be framed and is read, the
#: request gets 501 (README: only chunked is supported) and the connection goes on
TE_UNIMPLEMENTED = {"identity-chunked", "gzip-chunked", "comma-chunked"}
# Every other line either does not end in chunked (RFC 9112 6.3: 400 and close, the body cannot be framed),
# repeats the header, or is no valid header line: 400 and close. (A trailing tab is valid OWS, but refusing
# it is safe: nothing is forwarded.)

CHUNKED_BODY = "5\r\nhello\r\n0\r\n\r\n"


def _te_variants() -> list[Variant]:
    out = []
    for name, line in TE_LINES.items():
        # TE alone, a proper chunked body after it, then a pipelined GET
        data = post(te=line, body=CHUNKED_BODY) + f"GET /{{v}}/next HTTP/1.1\r\n{H}\r\n"
        if name in TE_CHUNKED:
            out.append(Variant(f"te-{name}", data, (200, 200), False,
                               (("POST", "/p", b"hello"), ("GET", "/next", b""))))
        elif name in TE_NOT_A_TE:
            # no framing header: no body; the chunked bytes are the next "request" and cannot be parsed
            out.append(Variant(f"te-{name}", data, (200, 400), True, (("POST", "/p", b""),)))
        elif name in TE_UNIMPLEMENTED:
            out.append(Variant(f"te-{name}", data, (501, 200), False, (("GET", "/next", b""),)))
        else:
            out.append(refused(f"te-{name}", data))
        # CL.TE: Content-Length first; TE.CL: Transfer-Encoding first — with a smuggled request in the body
        smuggle = "0\r\n\r\n" + SMUGGLED
        cl = f"Content-Length: {blen(smuggle)}\r\n"
        if name in TE_NOT_A_TE:
            for order, (te, cl_) in (("cl-te", (None, cl + line)), ("te-cl", (line + cl, None))):
                out.append(Variant(f"{order}-{name}", post(te=te, cl=cl_, body=smuggle), (200,), False,
                                   (("POST", "/p", smuggle.encode("latin-1")),)))
        else:
            out.append(refused(f"cl-te-{name}", post(cl=cl + line, body=smuggle)))
            out.append(refused(f"te-cl-{name}", post(te=line + cl, body=smuggle)))
        # TE.CL with a short Content-Length: the classic "5c\r\nGPOST ..." probe
        chunk = f"GPOST /{{v}}/smuggled HTTP/1.1\r\n{H}Content-Length: 15\r\n\r\nx=1"
        body = f"{blen(chunk):x}\r\n{chunk}\r\n0\r\n\r\n"
        if name not in TE_NOT_A_TE:
            out.append(refused(f"te-cl-short-{name}", post(te=line, cl="Content-Length: 4\r\n", body=body)))
    return out


# -- Content-Length values --------------------------------------------------------------------------------
CL_VALID = {"5": "5", "leading-zero": "0005", "ows-before": " 5", "ows-after": "5 ", "tab-before": "\t5",
            "tab-after": "5\t"}
CL_INVALID = {
    "plus": "+5", "minus": "-5", "hex": "0x5", "decimal": "5.0", "exponent": "5e0", "empty": "", "letters": "five",
    "list-same": "5, 5", "list-same-nospace": "5,5", "list-different": "5, 6", "space-inside": "5 5",
    "nul": "5\x00", "vtab": "5\x0b", "ff": "\x0c5", "nonascii": "5\xa0", "overflow": "99999999999999999999999",
    "negative-zero": "-0", "unicode-digit": "\xb5", "quoted": '"5"', "semicolon": "5;", "cr": "5\r",
}


def _cl_variants() -> list[Variant]:
    out = []
    for name, value in CL_VALID.items():
        data = post(cl=f"Content-Length: {value}\r\n", body="hello") + f"GET /{{v}}/next HTTP/1.1\r\n{H}\r\n"
        out.append(Variant(f"cl-{name}", data, (200, 200), False, (("POST", "/p", b"hello"), ("GET", "/next", b""))))
    for name, value in CL_INVALID.items():
        out.append(refused(f"cl-{name}", post(cl=f"Content-Length: {value}\r\n", body="hello" + SMUGGLED)))
    out.append(refused("cl-twice-same", post(cl="Content-Length: 5\r\nContent-Length: 5\r\n", body="hello")))
    out.append(refused("cl-twice-different", post(cl="Content-Length: 5\r\nContent-Length: 7\r\n", body="hello")))
    out.append(refused("cl-twice-zero-first", post(cl="Content-Length: 0\r\nContent-Length: 5\r\n", body="hello")))
    out.append(refused("cl-space-before-colon", post(cl="Content-Length : 5\r\n", body="hello")))
    out.append(refused("cl-tab-before-colon", post(cl="Content-Length\t: 5\r\n", body="hello")))
    out.append(refused("cl-obs-fold", post(cl="Content-Length:\r\n 5\r\n", body="hello")))
    out.append(refused("cl-bare-lf", post(cl="Content-Length: 5\n", body="hello")))
    out.append(refused("cl-folded-name", post(cl="X-Pad: x\r\n Content-Length: 5\r\n", body="hello")))
    out.append(refused("cl-leading-space-name", post(cl=" Content-Length: 5\r\n", body="hello")))
    # an underscore name is no Content-Length: no body; "hello" is the start of the next request
    out.append(Variant("cl-underscore-name", post(cl="Content_Length: 5\r\n", body="hello"), (200, 400), True,
                       (("POST", "/p", b""),)))
    # the declared body is the smuggled request's bytes: the site gets them as the body, never as a request
    body = SMUGGLED
    out.append(Variant("cl-body-holds-a-request", post(cl=f"Content-Length: {blen(body)}\r\n",
                                                       body=body), (200,), False,
                       (("POST", "/p", body.encode("latin-1")),)))
    # GET with a body, and a body on methods that rarely carry one
    for method in ("GET", "OPTIONS", "DELETE", "PUT"):
        data = f"{method} /{{v}}/m HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\nhelloGET /{{v}}/next HTTP/1.1\r\n{H}\r\n"
        out.append(Variant(f"cl-body-on-{method.lower()}", data, (200, 200), False,
                           ((method, "/m", b"hello"), ("GET", "/next", b""))))
    return out


# -- chunk sizes, extensions, trailers -------------------------------------------------------------------------
CHUNKED_VALID = {
    "one-chunk": ("3\r\nabc\r\n0\r\n\r\n", b"abc"),
    "two-chunks": ("2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n", b"hello"),
    "upper-hex": ("A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    "leading-zeros": ("0005\r\nhello\r\n0\r\n\r\n", b"hello"),
    "extension": ("5;name=value\r\nhello\r\n0\r\n\r\n", b"hello"),
    "extension-quoted": ('5;name="a b"\r\nhello\r\n0\r\n\r\n', b"hello"),
    "extension-bare": ("5;name\r\nhello\r\n0\r\n\r\n", b"hello"),
    "extension-on-last": ("5\r\nhello\r\n0;end=1\r\n\r\n", b"hello"),
    "trailer": ("5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n", b"hello"),
    "empty-body": ("0\r\n\r\n", b""),
}
CHUNKED_INVALID = {
    "hex-prefix": "0x5\r\nhello\r\n0\r\n\r\n",
    "plus": "+5\r\nhello\r\n0\r\n\r\n",
    "minus": "-5\r\nhello\r\n0\r\n\r\n",
    "space-before-size": " 5\r\nhello\r\n0\r\n\r\n",
    "letters": "5g\r\nhello\r\n0\r\n\r\n",
    "empty-size": "\r\nhello\r\n0\r\n\r\n",
    "overflow": "fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "size-longer-than-data": "3\r\nhello\r\n0\r\n\r\n",
    "no-crlf-after-data": "5\r\nhelloXX0\r\n\r\n",
    "lf-after-size": "5\nhello\r\n0\r\n\r\n",
    "lf-after-data": "5\r\nhello\n0\r\n\r\n",
    "cr-after-size": "5\rhello\r\n0\r\n\r\n",
    "nul-in-size": "5\x00\r\nhello\r\n0\r\n\r\n",
    "vtab-in-size": "5\x0b\r\nhello\r\n0\r\n\r\n",
    "extension-nul": "5;a=\x00\r\nhello\r\n0\r\n\r\n",
    "extension-bare-lf": "5;a\nb\r\nhello\r\n0\r\n\r\n",
    "trailer-obs-fold": "5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n",
    "trailer-bare-lf": "5\r\nhello\r\n0\r\nX-T: a\n\r\n",
    "trailer-no-colon": "5\r\nhello\r\n0\r\nnocolon\r\n\r\n",
}


def _chunk_variants() -> list[Variant]:
    out = []
    for name, (body, received) in CHUNKED_VALID.items():
        data = post(te="Transfer-Encoding: chunked\r\n", body=body) + f"GET /{{v}}/next HTTP/1.1\r\n{H}\r\n"
        out.append(Variant(f"chunked-{name}", data, (200, 200), False,
                           (("POST", "/p", received), ("GET", "/next", b""))))
    for name, body in CHUNKED_INVALID.items():
        out.append(refused(f"chunked-{name}", post(te="Transfer-Encoding: chunked\r\n", body=body + SMUGGLED)))
    return out


# -- the request line and the head -----------------------------------------------------------------------------
def _head_variants() -> list[Variant]:
    out = []
    bad_lines = {
        "http09": "GET /{v}/a\r\n\r\n",
        "http09-with-host": f"GET /{{v}}/a\r\n{H}\r\n",
        "version-1.2": f"GET /{{v}}/a HTTP/1.2\r\n{H}\r\n",
        "version-2.0": f"GET /{{v}}/a HTTP/2.0\r\n{H}\r\n",
        "version-lower": f"GET /{{v}}/a http/1.1\r\n{H}\r\n",
        "version-leading-zero": f"GET /{{v}}/a HTTP/01.1\r\n{H}\r\n",
        "version-missing": f"GET /{{v}}/a \r\n{H}\r\n",
        "method-lower": f"get /{{v}}/a HTTP/1.1\r\n{H}\r\n",
        "method-unknown": f"GOT /{{v}}/a HTTP/1.1\r\n{H}\r\n",
        "method-tab-separator": f"GET\t/{{v}}/a HTTP/1.1\r\n{H}\r\n",
        "space-in-target": f"GET /{{v}}/a b HTTP/1.1\r\n{H}\r\n",
        "nul-in-target": f"GET /{{v}}/a\x00 HTTP/1.1\r\n{H}\r\n",
        "ctl-in-target": f"GET /{{v}}/a\x01 HTTP/1.1\r\n{H}\r\n",
        "request-line-bare-lf": f"GET /{{v}}/a HTTP/1.1\n{H}\r\n",
        "header-bare-lf": f"GET /{{v}}/a HTTP/1.1\r\n{H}X-A: b\n\r\n",
        "end-bare-lf": f"GET /{{v}}/a HTTP/1.1\r\n{H}\n",
        "all-bare-lf": "GET /{v}/a HTTP/1.1\nHost: localhost\n\n",
        "bare-cr": f"GET /{{v}}/a HTTP/1.1\r\n{H}X-A: b\rX-B: c\r\n\r\n",
        "obs-fold": f"GET /{{v}}/a HTTP/1.1\r\n{H}X-A: b\r\n c\r\n\r\n",
        "obs-fold-tab": f"GET /{{v}}/a HTTP/1.1\r\n{H}X-A: b\r\n\tc\r\n\r\n",
        "fold-first-line": f"GET /{{v}}/a HTTP/1.1\r\n {H}\r\n",
        "space-before-colon": f"GET /{{v}}/a HTTP/1.1\r\n{H}X-A : b\r\n\r\n",
        "no-colon": f"GET /{{v}}/a HTTP/1.1\r\n{H}X-A b\r\n\r\n",
        "empty-name": f"GET /{{v}}/a HTTP/1.1\r\n{H}: b\r\n\r\n",
        "nul-in-name": f"GET /{{v}}/a HTTP/1.1\r\n{H}X-\x00A: b\r\n\r\n",
        "nul-in-value": f"GET /{{v}}/a HTTP/1.1\r\n{H}X-A: b\x00c\r\n\r\n",
        "ctl-in-value": f"GET /{{v}}/a HTTP/1.1\r\n{H}X-A: b\x01c\r\n\r\n",
        "del-in-value": f"GET /{{v}}/a HTTP/1.1\r\n{H}X-A: b\x7fc\r\n\r\n",
        "separator-in-name": f"GET /{{v}}/a HTTP/1.1\r\n{H}X(A): b\r\n\r\n",
        "nonascii-name": f"GET /{{v}}/a HTTP/1.1\r\n{H}X-\xe9: b\r\n\r\n",
        "missing-host": "GET /{v}/a HTTP/1.1\r\n\r\n",
        "two-hosts": f"GET /{{v}}/a HTTP/1.1\r\n{H}{H}\r\n",
        "two-hosts-different": f"GET /{{v}}/a HTTP/1.1\r\n{H}Host: other.test\r\n\r\n",
        "connect": "CONNECT localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\n",
        "asterisk-options": f"OPTIONS * HTTP/1.1\r\n{H}\r\n",
        "upgrade-h2c": f"GET /{{v}}/a HTTP/1.1\r\n{H}Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                       "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        "upgrade-foo": f"GET /{{v}}/a HTTP/1.1\r\n{H}Connection: Upgrade\r\nUpgrade: foo\r\n\r\n",
        "h2-preface": "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "garbage": "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03{v}",
    }
    # (HTTP/1.2 and 2.0 in an HTTP/1 request line: 400 rather than 505, safe either way)
    statuses = {"connect": 405}
    bugs: dict[str, str] = {}  # none open (HTTP/0.9 and HTTP/2.0 request lines are refused since issue 17)
    for name, data in bad_lines.items():
        out.append(refused(f"head-{name}", data + f"GET /{{v}}/next HTTP/1.1\r\n{H}\r\n",
                           statuses.get(name, 400), bugs.get(name, "")))
    # RFC 9112 3: a recipient MAY parse the request line on whitespace-delimited words
    out.append(Variant("head-double-space", f"GET  /{{v}}/a HTTP/1.1\r\n{H}\r\nGET /{{v}}/next HTTP/1.1\r\n{H}\r\n",
                       (200, 200), False, (("GET", "/a", b""), ("GET", "/next", b""))))
    # HTTP/1.0: closed after its answer (keep-alive is the server's choice for HTTP/1.0: this one closes, and
    # says so); what was pipelined behind it is never forwarded
    out.append(Variant("http10-close", f"GET /{{v}}/a HTTP/1.0\r\n{H}\r\nGET /{{v}}/next HTTP/1.1\r\n{H}\r\n",
                       (200,), True, (("GET", "/a", b""),)))
    out.append(Variant("http10-keepalive", f"GET /{{v}}/a HTTP/1.0\r\n{H}Connection: keep-alive\r\n\r\n"
                       + SMUGGLED, (200,), True, (("GET", "/a", b""),)))
    out.append(Variant("http10-keepalive-body", f"POST /{{v}}/p HTTP/1.0\r\n{H}Connection: keep-alive\r\n"
                       "Content-Length: 5\r\n\r\nhello" + SMUGGLED, (200,), True, (("POST", "/p", b"hello"),)))
    # RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing: processed, then closed;
    # nothing after it is read
    out.append(Variant("http10-chunked", post(te="Transfer-Encoding: chunked\r\n", body=CHUNKED_BODY,
                                              version="HTTP/1.0") + SMUGGLED, (200,), True,
                       (("POST", "/p", b"hello"),)))
    out.append(Variant("http10-chunked-keepalive", post(te="Transfer-Encoding: chunked\r\n", body=CHUNKED_BODY,
                                                        extra="Connection: keep-alive\r\n", version="HTTP/1.0")
                       + SMUGGLED, (200,), True, (("POST", "/p", b"hello"),)))
    out.append(Variant("http11-connection-close", f"GET /{{v}}/a HTTP/1.1\r\n{H}Connection: close\r\n\r\n"
                       + SMUGGLED, (200,), True, (("GET", "/a", b""),)))
    return out


# -- pipelining around bodies -----------------------------------------------------------------------------------
def _pipeline_variants() -> list[Variant]:
    out = []
    nxt = f"GET /{{v}}/next HTTP/1.1\r\n{H}\r\n"
    out.append(Variant("pipe-cl-then-gets", post(cl="Content-Length: 5\r\n", body="hello") + nxt + nxt,
                       (200, 200, 200), False, (("POST", "/p", b"hello"), ("GET", "/next", b""),
                                                ("GET", "/next", b""))))
    out.append(Variant("pipe-chunked-then-post", post(te="Transfer-Encoding: chunked\r\n", body=CHUNKED_BODY)
                       + post(cl="Content-Length: 3\r\n", body="abc", path="/q"), (200, 200), False,
                       (("POST", "/p", b"hello"), ("POST", "/q", b"abc"))))
    out.append(Variant("pipe-three-posts", "".join(
        post(cl="Content-Length: 3\r\n", body=f"b{i}!", path=f"/p{i}") for i in range(3)) + nxt,
        (200, 200, 200, 200), False, (*(("POST", f"/p{i}", f"b{i}!".encode()) for i in range(3)),
                                      ("GET", "/next", b""))))
    out.append(Variant("pipe-cl-zero-then-get", post(cl="Content-Length: 0\r\n") + nxt, (200, 200), False,
                       (("POST", "/p", b""), ("GET", "/next", b""))))
    out.append(Variant("pipe-then-junk", post(cl="Content-Length: 5\r\n", body="helloJUNK\r\n\r\n"), (200, 400), True,
                       (("POST", "/p", b"hello"),)))
    out.append(Variant("pipe-then-bad-framing", post(cl="Content-Length: 5\r\n", body="hello")
                       + post(cl="Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", body="0\r\n\r\n", path="/q")
                       + nxt, (200, 400), True, (("POST", "/p", b"hello"),)))
    out.append(Variant("pipe-then-bad-host", post(cl="Content-Length: 5\r\n", body="hello")
                       + "GET /{v}/evil HTTP/1.1\r\nHost: evil.com@localhost\r\n\r\n" + nxt, (200, 400), True,
                       (("POST", "/p", b"hello"),)))
    out.append(Variant("pipe-then-broken-chunk", nxt + post(te="Transfer-Encoding: chunked\r\n",
                                                            body="5\r\nhello\r\nZZ\r\n"), (200, 400), True,
                       (("GET", "/next", b""),)))
    out.append(Variant("pipe-twenty-gets", "".join(f"GET /{{v}}/g{i} HTTP/1.1\r\n{H}\r\n" for i in range(20)),
                       (200,) * 20, False, tuple(("GET", f"/g{i}", b"") for i in range(20))))
    out.append(Variant("pipe-crlf-between", post(cl="Content-Length: 5\r\n", body="hello") + "\r\n" + nxt,
                       (200, 200), False, (("POST", "/p", b"hello"), ("GET", "/next", b""))))
    return out


# -- WebSocket smuggling: an upgrade the site refuses must not leave a raw tunnel open behind the proxy -----------
WS = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"


def _websocket_variants() -> list[Variant]:
    smuggled = "GET /{v}/smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
    # the site (the recorder) answers 200, not 101: the proxy answers 502 and closes, so no tunnel is left to
    # send a request through (nothing is pipelined after it: bytes after an upgrade head are the WebSocket's,
    # and the proxy may close on them before the 502, depending on when they arrive)
    out = [Variant("ws-site-refuses-upgrade", f"GET /{{v}}/a HTTP/1.1\r\n{H}{WS}Sec-WebSocket-Version: 13\r\n\r\n",
                   (502,), True, (("GET", "/a", b""),))]
    out.append(refused("ws-bad-version", f"GET /{{v}}/a HTTP/1.1\r\n{H}{WS}Sec-WebSocket-Version: 1337\r\n\r\n"
                       + smuggled))
    out.append(refused("ws-bad-key", f"GET /{{v}}/a HTTP/1.1\r\n{H}Upgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: bad\r\nSec-WebSocket-Version: 13\r\n\r\n" + smuggled))
    out.append(refused("ws-no-key", f"GET /{{v}}/a HTTP/1.1\r\n{H}Upgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n" + smuggled))
    out.append(refused("ws-post", f"POST /{{v}}/a HTTP/1.1\r\n{H}{WS}Sec-WebSocket-Version: 13\r\n"
                       "Content-Length: 5\r\n\r\nhello" + smuggled))
    return out


def all_variants() -> list[Variant]:
    variants = (_te_variants() + _cl_variants() + _chunk_variants() + _head_variants() + _pipeline_variants()
                + _websocket_variants())
    names = [variant.name for variant in variants]
    assert len(names) == len(set(names)), "variant names are unique"
    return variants
