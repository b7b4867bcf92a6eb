"""The visitor consent API (`/_consent`) against a real proxy process and a real upstream."""

from __future__ import annotations

import http.client
import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import Proxy, Upstream, launch_proxy, mint, raw_request, site_toml, status_of

SITE = "kade"


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name]

    def cookie_value(self, name: str = "cp_consent") -> str:
        for line in self.header("set-cookie"):
            if line.startswith(name + "="):
                return line.split(";", 1)[0].split("=", 1)[1]
        raise AssertionError(f"no {name} cookie in {self.header('set-cookie')}")


def call(proxy: Proxy, method: str, path: str = "/_consent", body: object = None, *, raw: bytes | None = None,
         headers: dict[str, str] | None = None, cookie: str | None = None) -> Answer:
    sent = {"Host": f"127.0.0.1:{proxy.port}", **(headers or {})}
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    if cookie is not None:
        sent["Cookie"] = cookie
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        return Answer(response.status, response.getheaders(), response.read())
    finally:
        connection.close()


@pytest.fixture(scope="module")
def proxy(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    sites = site_toml(SITE, upstream.url, hosts=("127.0.0.1", "localhost"), necessary=("sid",))
    sites += "[sites.kade.consent]\nrevision = 3\nvalidity = \"180d\"\n"
    running = launch_proxy(tmp_path_factory.mktemp("api"), 0, sites)
    yield running
    running.stop(signal.SIGTERM)


def test_undecided_visitor_reads_an_empty_state(proxy: Proxy) -> None:
    answer = call(proxy, "GET")
    assert answer.status == 200
    assert answer.json() == {
        "principal": None, "decided": False, "granted": ["necessary"],
        "choices": {"necessary": True, "preferences": False, "statistics": False, "marketing": False},
        "revision": 3, "decided_at": None, "expires_at": None, "method": None, "gpc": False,
    }
    assert answer.header("cache-control") == ["no-store"]
    assert answer.header("content-type") == ["application/json"]
    assert call(proxy, "GET", headers={"Sec-GPC": "1"}).json()["gpc"] is True


def test_accept_all_sets_a_signed_cookie_and_returns_the_state(proxy: Proxy, upstream: Upstream) -> None:
    before = len(upstream.seen)
    answer = call(proxy, "POST", body={"action": "accept_all"}, headers={"Origin": f"http://127.0.0.1:{proxy.port}"})
    assert answer.status == 200, answer.body
    state = answer.json()
    assert state["decided"] is True and state["method"] == "accept_all"
    assert state["granted"] == ["necessary", "preferences", "statistics", "marketing"]
    assert state["expires_at"] - state["decided_at"] == 180 * 86400
    assert len(state["principal"]) == 22
    (line,) = [v for v in answer.header("set-cookie") if v.startswith("cp_consent=")]
    assert "HttpOnly" in line and "SameSite=Lax" in line and f"Max-Age={180 * 86400}" in line
    assert len(upstream.seen) == before  # the consent API is never forwarded
    # The cookie is what the proxy reads back: the same state on the next GET.
    again = call(proxy, "GET", cookie=f"cp_consent={answer.cookie_value()}").json()
    assert again == state


def test_a_new_decision_keeps_the_principal(proxy: Proxy) -> None:
    first = call(proxy, "POST", body={"action": "reject_all"})
    cookie = f"cp_consent={first.cookie_value()}"
    second = call(proxy, "POST", body={"action": "save_selection", "choices": {"statistics": True,
                                                                                "marketing": False}}, cookie=cookie)
    assert second.status == 200
    assert second.json()["principal"] == first.json()["principal"]
    assert second.json()["granted"] == ["necessary", "statistics"]
    assert second.json()["method"] == "save_selection"
    # A decision under an older notice revision no longer counts, but the visitor keeps their id.
    old = mint(proxy, {"statistics"}, revision=2)
    assert call(proxy, "GET", cookie=f"cp_consent={old}").json()["decided"] is False
    renewed = call(proxy, "POST", body={"action": "accept_all"}, cookie=f"cp_consent={old}")
    assert renewed.json()["principal"] != first.json()["principal"]
    assert renewed.json()["revision"] == 3


def test_withdrawal_expires_the_cookies_in_the_same_answer(proxy: Proxy) -> None:
    given = call(proxy, "POST", body={"action": "accept_all"}).cookie_value()
    answer = call(proxy, "POST", body={"action": "withdraw"},
                  cookie=f"_ga=GA1.1.2.3; cp_consent={given}; sid=s; _fbp=fb.1.2; _gid=x")
    assert answer.status == 200
    assert answer.json()["granted"] == ["necessary"] and answer.json()["method"] == "withdraw"
    expired = {v.split("=", 1)[0] for v in answer.header("set-cookie") if "Max-Age=0" in v}
    assert expired == {"_ga", "_fbp", "_gid"}  # sid is necessary, cp_consent is renewed, not expired
    refusal = call(proxy, "GET", cookie=f"cp_consent={answer.cookie_value()}").json()
    assert refusal["decided"] is True and refusal["granted"] == ["necessary"]


def test_a_retried_post_with_the_same_idempotency_key_counts_once(proxy: Proxy) -> None:
    key = {"Idempotency-Key": "4b0c2a8e-1111-4222-8333-944445555666"}
    first = call(proxy, "POST", body={"action": "accept_all"}, headers=key)
    second = call(proxy, "POST", body={"action": "accept_all"}, headers=key)
    assert first.status == second.status == 200
    assert first.body == second.body  # same principal, same time
    assert first.cookie_value() == second.cookie_value()
    metrics = proxy.metrics()
    other = call(proxy, "POST", body={"action": "reject_all"}, headers=key)
    assert other.status == 422 and other.json()["error"] == "idempotency_key_reused"
    fresh = call(proxy, "POST", body={"action": "accept_all"}, headers={"Idempotency-Key": "another-key"})
    assert fresh.json()["principal"] != first.json()["principal"]
    counted = _metric(proxy.metrics(), 'consentproxy_consent_decisions_total{method="accept_all",site="kade"}')
    assert counted == _metric(metrics, 'consentproxy_consent_decisions_total{method="accept_all",site="kade"}') + 1
    bad = call(proxy, "POST", body={"action": "accept_all"}, headers={"Idempotency-Key": "bad key"})
    assert bad.status == 400 and bad.json()["error"] == "invalid_idempotency_key"


def _metric(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize(("headers", "allowed"), [
    ({"Origin": "https://evil.example"}, False),
    ({"Origin": "null"}, False),
    ({"Origin": "http://127.0.0.1:1"}, False),  # another port is another origin
    ({"Sec-Fetch-Site": "cross-site"}, False),
    ({"Sec-Fetch-Site": "same-site"}, False),  # a sibling subdomain is not the site itself
    ({"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:{port}"}, True),
    ({}, True),  # no browser: nothing to forge
])
def test_only_the_sites_own_pages_may_decide(proxy: Proxy, headers: dict[str, str], allowed: bool) -> None:
    sent = {k: v.format(port=proxy.port) for k, v in headers.items()}
    answer = call(proxy, "POST", body={"action": "accept_all"}, headers=sent)
    if allowed:
        assert answer.status == 200
    else:
        assert answer.status == 403
        assert answer.json()["error"] == "cross_site"
        assert not answer.header("set-cookie")


@pytest.mark.parametrize(("body", "content_type", "status", "code"), [
    (b'{"action": "accept_all"}', "text/plain", 415, "unsupported_media_type"),
    (b'{"action": "accept_all"}', "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (b"action=accept_all", None, 415, "unsupported_media_type"),
    (b'{"action": ', "application/json", 400, "invalid_json"),
    (b'["accept_all"]', "application/json", 400, "invalid_body"),
    (b'{"action": "accept_all", "extra": 1}', "application/json", 400, "unknown_field"),
    (b'{"action": "sell_everything"}', "application/json", 422, "unknown_action"),
    (b'{}', "application/json", 422, "unknown_action"),
    (b'{"action": "save_selection"}', "application/json", 422, "choices_required"),
    (b'{"action": "save_selection", "choices": {"ads": true}}', "application/json", 422, "unknown_category"),
    (b'{"action": "save_selection", "choices": {"statistics": 1}}', "application/json", 422, "invalid_choices"),
    (b'{"action": "save_selection", "choices": ["statistics"]}', "application/json", 422, "invalid_choices"),
    (b'{"action": "save_selection", "choices": {"necessary": false}}', "application/json", 422,
     "necessary_required"),
    (b'{"action": "accept_all", "pad": "' + b"x" * 5000 + b'"}', "application/json", 413, "body_too_large"),
])
def test_bad_input_gets_a_clear_json_error(proxy: Proxy, body: bytes, content_type: str | None, status: int,
                                           code: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    answer = call(proxy, "POST", raw=body, headers=headers)
    assert answer.status == status, answer.body
    error = answer.json()
    assert error["error"] == code and error["message"]
    assert not answer.header("set-cookie")


def test_a_large_chunked_body_is_refused_without_reading_it_all(proxy: Proxy) -> None:
    chunk = b"x" * 4000
    request = (b"POST /_consent HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               + b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3)) + b"0\r\n\r\n")
    response = raw_request(proxy.port, request)
    assert status_of(response) == 413
    assert b'"body_too_large"' in response


def test_other_methods_are_refused(proxy: Proxy) -> None:
    for method in ("PUT", "DELETE", "PATCH"):
        answer = call(proxy, method, raw=b"{}")
        assert answer.status == 405
        assert answer.header("allow") == ["GET, HEAD, POST"]
    assert call(proxy, "POST", "/_consent/receipt", raw=b"{}").status == 405
    head = call(proxy, "HEAD")
    assert head.status == 200 and head.body == b""


def test_the_receipt_is_the_visitors_own_record(proxy: Proxy) -> None:
    assert call(proxy, "GET", "/_consent/receipt").status == 404
    decided = call(proxy, "POST", body={"action": "save_selection", "choices": {"preferences": True}})
    receipt = call(proxy, "GET", "/_consent/receipt", cookie=f"cp_consent={decided.cookie_value()}")
    assert receipt.status == 200
    assert receipt.header("content-disposition") == ['attachment; filename="consent-receipt.json"']
    data = receipt.json()
    assert data["principal"] == decided.json()["principal"]
    assert data["events"][0]["method"] == "save_selection"
    assert data["events"][0]["choices"]["preferences"] is True
    assert data["current"] == decided.json()


def test_a_forged_cookie_is_no_decision(proxy: Proxy) -> None:
    given = call(proxy, "POST", body={"action": "accept_all"})
    real = given.cookie_value()
    version, key_id, payload, signature = real.split(".")
    forged = ".".join([version, key_id, payload, signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")])
    assert call(proxy, "GET", cookie=f"cp_consent={forged}").json()["decided"] is False
    # and a POST with a forged cookie starts a new principal instead of taking over another's
    answer = call(proxy, "POST", body={"action": "reject_all"}, cookie=f"cp_consent={forged}")
    assert answer.status == 200
    assert answer.json()["principal"] != given.json()["principal"]


def test_a_gpc_signal_is_recorded_only_when_the_browser_sends_it(proxy: Proxy) -> None:
    refused = call(proxy, "POST", body={"action": "gpc_signal"})
    assert refused.status == 422 and refused.json()["error"] == "gpc_not_sent"
    answer = call(proxy, "POST", body={"action": "gpc_signal"}, headers={"Sec-GPC": "1"})
    assert answer.status == 200
    assert answer.json()["method"] == "gpc_signal" and answer.json()["granted"] == ["necessary"]
