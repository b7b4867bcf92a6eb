"""The server's periodic upkeep of the consent log: signed checkpoints and retention, in a real proxy."""

from __future__ import annotations

import datetime as dt
import signal
import time
from pathlib import Path

from conftest import Upstream, launch_proxy, site_toml
from test_consent_api import call

from consentproxy.records import ConsentEvent, load_private_key_file, open_store, verify_chain
from consentproxy.records.model import NoticeVersion


def test_checkpoints_are_signed_and_old_events_purged_while_serving(upstream: Upstream, tmp_path: Path) -> None:
    database = tmp_path / "records.db"
    url = f"sqlite:///{database}"
    # An event from long ago, from before this proxy ran: past a 30-day retention.
    store = open_store(url)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)
    notice = NoticeVersion.create("kade", 1, {
        "texts": {"en": "an older banner"}, "purposes": [], "data_categories": [], "recipients": [], "cookies": [],
        "storage_location": "EEA", "retention": "P395D", "controller": "Kade", "jurisdiction": "NL"})
    store.put_notice(notice)
    store.append([ConsentEvent.new(site="kade", principal="old-visitor", notice_id=notice.id, event_type="refused",
                                   method="reject_all", choices={"necessary": True}, expires_at=old, time=old)])
    store.close()

    sites = site_toml("kade", upstream.url) + '[sites.kade.consent]\nrecord_retention = "30d"\n'
    proxy = launch_proxy(tmp_path, 0, f'[store]\nurl = "{url}"\nupkeep_interval = "1s"\n\n' + sites)
    try:
        recent = call(proxy, "POST", body={"action": "accept_all"}).json()["principal"]
        key = load_private_key_file(tmp_path / "data0" / "secrets" / "export-ed25519.key")
        deadline = time.monotonic() + 30
        while True:
            store = open_store(url)
            try:
                events = list(store.events("kade"))
                checkpoints = store.checkpoints("kade")
                done = [e.principal for e in events] == [recent] and any(
                    c.kind == "head" and c.seq == events[-1].seq for c in checkpoints)
                if done or time.monotonic() > deadline:
                    break
            finally:
                store.close()
            time.sleep(0.2)
        assert [e.principal for e in events] == [recent], "the 90-day-old event was not purged"
        assert {c.kind for c in checkpoints} >= {"cut", "head"}
        store = open_store(url)
        try:
            verdict = verify_chain(store.events("kade"), store.checkpoints("kade"), key.public_key())
        finally:
            store.close()
        assert verdict.ok, verdict  # what is left verifies from the signed cut
    finally:
        proxy.stop(signal.SIGTERM)
