"""Erasure ends the consent (issue 19 item 3): after an erasure or a withdrawal through the admin API the
visitor's consent cookie no longer counts, on every worker and on every instance sharing the store, within
seconds — the banner shows again, trackers are blocked, optional cookies and the consent cookie are expired,
a new decision gets a new consent id, and the receipt says what happened."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import Proxy, free_port, launch_proxy, serve_app, site_toml
from pg_support import pg_schema
from test_admin_api import OPS_TOKEN, TOKENS_TOML, admin
from test_consent_api import Answer, call

from consentproxy.config.model import SiteConfig
from consentproxy.config.secrets import SigningKey
from consentproxy.consent.decision import ALL, Decision
from consentproxy.consent.revocations import RevocationPoller, Revocations
from consentproxy.consent.state import ConsentCodec, ConsentState
from consentproxy.cookies.enforcement import DECISION, REVOKED, CookieEnforcement
from consentproxy.cookies.inventory import CookieInventory
from consentproxy.records import RecordWriter, open_store
from consentproxy.records.model import utc_ms
from consentproxy.records.store import AuditEntry, RecordStore, StoreUnavailable, subject_commitment

SITE = "kade"
PAGE = ('<!doctype html><html><head><script async src="https://www.googletagmanager.com/gtag/js?id=G-1">'
        "</script></head><body><p>Welkom</p></body></html>")
#: how long a revocation may take to reach every worker and instance (the acceptance says 5 s; a loaded CI
#: machine gets more, the assertion is a deadline, not a timing)
DEADLINE = 30.0


# -- the revocation set and its poll, in-process -------------------------------------------------------


def entry(action: str, status: int = 200, outcome: str = "ok", consent_id: str = "A" * 22,
          site: str = SITE, age: timedelta = timedelta()) -> AuditEntry:
    return AuditEntry(token="ops", scope="full", action=action, status=status, outcome=outcome, site=site,
                      subject=subject_commitment(site, consent_id), time=utc_ms() - age)


def test_only_successful_erasures_and_withdrawals_revoke() -> None:
    revocations = Revocations()
    added = revocations.take([
        entry("erasure", consent_id="erased" * 4), entry("withdrawal", 201, consent_id="withdrawn" * 3),
        entry("erasure", 403, "insufficient_scope", consent_id="refused" * 4),
        entry("withdrawal", 404, "unknown_consent", consent_id="unknown" * 4),
        entry("access", consent_id="looked-at" * 3),
    ])
    assert added == 2
    assert revocations.reason(SITE, "erased" * 4) == "erasure"
    assert revocations.reason(SITE, "withdrawn" * 3) == "withdrawal"
    for kept in ("refused" * 4, "unknown" * 4, "looked-at" * 3):
        assert revocations.reason(SITE, kept) is None
    assert revocations.reason("other", "erased" * 4) is None  # a commitment names its site
    assert "other" not in revocations.by_site  # a site without revocations costs a dict lookup, no hashing
    # an erasure after a withdrawal is what the receipt must say; a withdrawal after an erasure changes nothing
    assert revocations.add(SITE, subject_commitment(SITE, "withdrawn" * 3), "erasure") is False
    assert revocations.add(SITE, subject_commitment(SITE, "withdrawn" * 3), "withdrawal") is False
    assert revocations.reason(SITE, "withdrawn" * 3) == "erasure"
    assert revocations.count(SITE) == 2
    # a verdict is remembered per principal (one hash per visitor, not per request) until the set changes
    assert revocations.reason(SITE, "later-person-000") is None
    assert revocations.add(SITE, subject_commitment(SITE, "later-person-000"), "withdrawal") is True
    assert revocations.reason(SITE, "later-person-000") == "withdrawal"


def test_the_poll_reads_everything_once_then_a_window_that_catches_late_commits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    with open_store(url) as store:
        store.add_audit(entry("erasure", consent_id="first-person-000"))
        store.add_audit(entry("erasure", consent_id="long-ago-person-0", age=timedelta(days=400)))

    async def scenario() -> None:
        writer = RecordWriter.for_url(url)
        revocations = Revocations()
        poller = RevocationPoller(revocations, writer, interval=0.01, overlap=60.0)
        try:
            assert await poller.poll() == 2  # the whole log at start, however old
            # committed after the first poll, but timed before it (built before its commit, or another clock)
            await writer.call(lambda s: s.add_audit(entry("withdrawal", 201, consent_id="late-person-00000",
                                                          age=timedelta(seconds=30))))
            assert await poller.poll() == 1
            assert revocations.reason(SITE, "late-person-00000") == "withdrawal"
            assert await poller.poll() == 0  # read again in the window: nothing new
        finally:
            await writer.close()

    asyncio.run(scenario())


@dataclass
class FlakyStore:
    """A store caller that fails its first calls, as a store that is down for a while."""

    url: str
    failures: int
    calls: int = 0
    stores: list[RecordStore] = field(default_factory=list)

    async def call(self, function: Callable[[RecordStore], Any]) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise StoreUnavailable("down for the test")
        if not self.stores:
            self.stores.append(open_store(self.url))
        return function(self.stores[0])


def test_a_failing_store_is_logged_once_and_the_poll_goes_on(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    with open_store(url) as store:
        store.add_audit(entry("erasure"))
    flaky = FlakyStore(url, failures=3)
    revocations = Revocations()

    async def scenario() -> None:
        task = asyncio.ensure_future(RevocationPoller(revocations, flaky, interval=0.001).run())
        deadline = time.monotonic() + 10
        while not revocations.count(SITE) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task  # stops cleanly when cancelled, as on shutdown

    with caplog.at_level("INFO", logger="consentproxy.consent"):
        asyncio.run(scenario())
    for opened in flaky.stores:
        opened.close()
    assert revocations.reason(SITE, "A" * 22) == "erasure"
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot read the audit log" in m for m in messages) == 1, messages
    assert any("answers again" in m for m in messages), messages
    assert not any("A" * 22 in m for m in messages)  # never a consent id in the log


def test_a_revoked_cookie_reads_as_undecided_and_is_expired_with_the_optional_cookies() -> None:
    revocations = Revocations()
    site = SiteConfig(name=SITE, hosts=("www.kade-it.nl",), upstream="http://127.0.0.1:1")
    codec = ConsentCodec((SigningKey("k1", b"k" * 32),))
    step = CookieEnforcement(site, codec, CookieInventory(Path("/nonexistent-dir")), revocations=revocations)
    now = int(time.time())

    def visit(principal: str) -> tuple[Decision, list[tuple[bytes, bytes]], Any]:
        value = codec.encode(ConsentState(principal, ALL - {"necessary"}, 1, now, now + 3600, "accept_all"))
        exchange = _Exchange([(b"cookie", f"_ga=GA1.1.42; cp_consent={value}".encode())])
        step.on_request(exchange)  # type: ignore[arg-type]
        exchange.response_headers = [(b"content-type", b"text/html")]
        step.on_response(exchange)  # type: ignore[arg-type]
        return exchange.extra[DECISION], exchange.response_headers, exchange

    decision, headers, exchange = visit("erased-person-000")
    assert decision.kind == "explicit"  # nothing revoked on this site yet: no hashing, the cookie counts
    revocations.add(SITE, subject_commitment(SITE, "erased-person-000"), "erasure")
    decision, headers, exchange = visit("erased-person-000")
    assert decision.kind == "none" and decision.state is None and exchange.extra[REVOKED] == "erasure"
    assert exchange.request_headers == []  # _ga no longer goes upstream, nor (ever) the consent cookie
    cookies = [value for name, value in headers if name == b"set-cookie"]
    assert (b"cp_consent=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; HttpOnly; SameSite=Lax; "
            b"Secure") in cookies
    assert any(value.startswith(b"_ga=; Max-Age=0") for value in cookies)
    assert (b"cache-control", b"private") in headers and (b"vary", b"Cookie") in headers
    decision, headers, exchange = visit("someone-else-0000")  # the site's other visitors are not touched
    assert decision.kind == "explicit" and REVOKED not in exchange.extra
    assert not [value for name, value in headers if name == b"set-cookie"]


class _Exchange:
    """The attributes of proxy.pipeline.Exchange the step uses."""

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.scope = {"raw_path": b"/"}
        self.request_headers = headers
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.extra: dict[str, Any] = {}
        self.host = b"www.kade-it.nl"
        self.scheme = "https"
        self.client = "127.0.0.1"


# -- through real proxy processes ---------------------------------------------------------------------


@dataclass
class Page:
    """The site's upstream: one page with a tracker that sets an analytics cookie; it notes the cookies sent."""

    port: int
    cookies: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def page_site() -> Iterator[Page]:
    page = Page(free_port())

    async def index(request: web.Request) -> web.Response:
        page.cookies.append(request.headers.get("Cookie", ""))
        return web.Response(text=PAGE, content_type="text/html", headers={"Set-Cookie": "_ga=GA1.1.42; Path=/"})

    app = web.Application()
    app.router.add_get("/", index)
    with serve_app(app, page.port):
        yield page


def admin_token(proxy: Proxy) -> str:
    return (proxy.config_path.parent / f"data{proxy.config_path.stem.removeprefix('proxy')}" / "secrets"
            / "admin-token").read_text().strip()


def instances(base: Path, page: Page, store_url: str | None, workers: int = 2) -> tuple[Proxy, Proxy]:
    """Two proxies on one consent log and one consent key file (as behind a load balancer); the first with
    several workers."""
    sites = site_toml(SITE, page.url) + TOKENS_TOML
    store = f'[store]\nurl = "{store_url}"\n\n' if store_url else ""
    first = launch_proxy(base, 0, store + sites, server={"workers": workers})
    shared_url = store_url or f"sqlite:///{base / 'data0' / 'consent-records.db'}"
    keys = base / "data0" / "secrets" / "consent-keys"
    second = launch_proxy(base, 1, f'[store]\nurl = "{shared_url}"\n\n[secrets]\nconsent_keys = "file:{keys}"\n\n'
                          + sites)
    return first, second


def decided(proxy: Proxy, cookie: str) -> bool:
    return bool(call(proxy, "GET", cookie=cookie).json()["decided"])


def wait_undecided(proxy: Proxy, cookie: str, in_a_row: int = 12) -> None:
    """Until the consent cookie no longer counts in `in_a_row` answers in a row: each worker's, in all
    likelihood (every request is a new connection the kernel hands to any worker; the one that served the
    erasure knows at once, the others from their next poll)."""
    deadline = time.monotonic() + DEADLINE
    streak = 0
    while streak < in_a_row:
        assert time.monotonic() < deadline, f"the consent still counts on {proxy.url} after {DEADLINE}s"
        if decided(proxy, cookie):
            streak = 0
            time.sleep(0.1)
        else:
            streak += 1


def expired(answer: Answer) -> set[str]:
    """The names of the cookies a response deletes."""
    return {line.split("=", 1)[0] for line in answer.header("set-cookie") if "Max-Age=0" in line}


def assert_ended(proxy: Proxy, page: Page, cookie: str) -> None:
    """What a visitor whose consent was ended meets: undecided, the banner, trackers blocked, cookies expired."""
    sent = f"{cookie}; _ga=GA1.1.42"
    state = call(proxy, "GET", cookie=sent)
    body = state.json()
    assert body["decided"] is False and body["granted"] == ["necessary"] and body["principal"] is None
    assert expired(state) >= {"cp_consent", "_ga"}
    before = len(page.cookies)
    shown = call(proxy, "GET", "/", cookie=sent)
    assert shown.status == 200
    html = shown.body.decode()
    assert 'data-cp-decided="0"' in html and 'id="cp-banner"' in html  # the banner asks again
    assert 'data-cp-blocked="statistics"' in html and 'async src="https://www.googletagmanager.com' not in html
    assert expired(shown) >= {"cp_consent", "_ga"}
    assert not [line for line in shown.header("set-cookie") if line.startswith("_ga=GA1")]  # not set again
    assert "_ga" not in page.cookies[before] and "cp_consent" not in page.cookies[before]


def test_an_erasure_ends_the_consent_on_every_worker_and_instance(tmp_path: Path) -> None:
    with page_site() as page:
        first, second = instances(tmp_path, page, None)
        try:
            given = call(first, "POST", body={"action": "accept_all"})
            assert given.status == 200, given.body
            person = given.json()["principal"]
            cookie = f"cp_consent={given.cookie_value()}"
            assert call(second, "GET", cookie=cookie).json()["granted"] == [
                "necessary", "preferences", "statistics", "marketing"]
            tracked = call(second, "GET", "/", cookie=cookie).body.decode()
            assert 'async src="https://www.googletagmanager.com' in tracked

            erased = admin(first, "DELETE", f"/api/sites/{SITE}/consents/{person}", token=admin_token(first))
            assert erased.status == 200 and erased.json()["erased"] == 1, erased.body
            # at once, before or after the other instance's poll: the receipt says erased, not "no record"
            receipt = call(second, "GET", "/_consent/receipt", cookie=cookie)
            assert receipt.status == 410 and receipt.json()["error"] == "erased", receipt.body
            for proxy in (first, second):
                wait_undecided(proxy, cookie)
                assert_ended(proxy, page, cookie)
                receipt = call(proxy, "GET", "/_consent/receipt", cookie=cookie)
                assert receipt.status == 410 and receipt.json()["error"] == "erased", receipt.body
                assert "cp_consent" in expired(receipt)

            again = call(second, "POST", body={"action": "save_selection", "choices": {"statistics": True}},
                         cookie=cookie)
            assert again.status == 200, again.body
            newcomer = again.json()["principal"]
            assert newcomer and newcomer != person  # an erased consent id is never used again
            new_cookie = f"cp_consent={again.cookie_value()}"
            assert decided(first, new_cookie) and decided(second, new_cookie)
            with open_store(f"sqlite:///{tmp_path / 'data0' / 'consent-records.db'}") as store:
                (event,) = store.events_of(SITE, newcomer)
                assert event.event_type == "given" and store.events_of(SITE, person) == []

            assert 'consentproxy_revoked_consents{site="kade"} 1.0' in first.metrics()
            assert "consentproxy_revoked_consent_cookies_total{site=\"kade\"}" in second.metrics()
            for proxy in (first, second):
                assert person not in proxy.log()  # never a consent id in the log
        finally:
            first.stop(signal.SIGTERM)
            second.stop(signal.SIGTERM)
        assert first.process.returncode == 0 and second.process.returncode == 0  # the poll stops cleanly


def test_a_withdrawal_on_behalf_is_recorded_audited_and_ends_the_consent(tmp_path: Path) -> None:
    with page_site() as page, pg_schema("test_revoke") as url:
        first, second = instances(tmp_path, page, url)
        try:
            given = call(second, "POST", body={"action": "save_selection", "choices": {"statistics": True}})
            assert given.status == 200, given.body
            person = given.json()["principal"]
            cookie = f"cp_consent={given.cookie_value()}"
            assert decided(first, cookie)

            path = f"/api/sites/{SITE}/consents/{person}/withdraw"
            withdrawn = admin(first, "POST", path, token=OPS_TOKEN)
            assert withdrawn.status == 201, withdrawn.body
            event = withdrawn.json()["event"]
            assert (event["method"], event["event_type"], event["principal"]) == ("withdraw", "withdrawn", person)
            assert event["choices"] == {"necessary": True, "preferences": False, "statistics": False,
                                        "marketing": False}
            assert event["ip"] is None and event["ua"] is None  # it did not come from the visitor's browser
            for proxy in (second, first):
                wait_undecided(proxy, cookie)
                assert_ended(proxy, page, cookie)
            # the record stands: the receipt lists it, the withdrawal last, and the visitor is undecided
            receipt = call(second, "GET", "/_consent/receipt", cookie=cookie)
            assert receipt.status == 200, receipt.body
            record = receipt.json()
            assert [e["method"] for e in record["events"]] == ["save_selection", "withdraw"]
            assert record["principal"] == person and record["current"]["decided"] is False
            assert record["events"][1]["notice_id"] == record["events"][0]["notice_id"]  # the site's current one

            audited = admin(first, "GET", f"/api/audit?action=withdrawal&site={SITE}&consent_id={person}",
                            token=OPS_TOKEN).json()["entries"]
            assert [(e["token"], e["status"], e["outcome"], e["subject"]) for e in audited] == [
                ("ops", 201, "ok", subject_commitment(SITE, person))]
            assert audited[0]["detail"]["record_id"] == event["record_id"]
            unknown = admin(first, "POST", f"/api/sites/{SITE}/consents/{'B' * 22}/withdraw", token=OPS_TOKEN)
            assert unknown.status == 404 and unknown.json()["error"] == "unknown_consent"

            again = call(first, "POST", body={"action": "reject_all"}, cookie=cookie)
            assert again.status == 200 and again.json()["principal"] not in (None, person)
            with open_store(url) as store:
                assert [e.method for e in store.events_of(SITE, person)] == ["save_selection", "withdraw"]
        finally:
            first.stop(signal.SIGTERM)
            second.stop(signal.SIGTERM)
