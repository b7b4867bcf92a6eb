"""`kill -9` during a burst of consent decisions: every decision the proxy acknowledged (200, a cookie) is in
the consent log afterwards, the log's chain still links, and the proxy starts again on the same data."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import threading
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest
from conftest import launch_proxy, site_toml

from consentproxy.records import open_store

from .conftest import SOAK
from .recorder import Recorder

pytestmark = pytest.mark.attack("kill -9 during a consent burst")

ROUNDS = 10 if SOAK else 1
ACTIONS = ("accept_all", "reject_all", "save_selection")


def _decide(port: int, action: str) -> str | None:
    """The principal of an acknowledged decision, or None (refused, or the connection died)."""
    body: dict[str, object] = {"action": action}
    if action == "save_selection":
        body["choices"] = {"statistics": True}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/_consent", body=json.dumps(body).encode(),
                           headers={"Host": f"127.0.0.1:{port}", "Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
        if response.status != 200 or not any(value.startswith("cp_consent=")
                                              for name, value in response.getheaders()
                                              if name.lower() == "set-cookie"):
            return None
        principal = json.loads(data)["principal"]
        return str(principal)
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        connection.close()


def _kill_tree(pid: int) -> None:
    """SIGKILL the proxy process and any worker it started (ours, by id)."""
    try:
        process = psutil.Process(pid)
        victims = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for victim in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            victim.send_signal(signal.SIGKILL)
    psutil.wait_procs(victims, timeout=10)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_every_acknowledged_decision_survives_kill_9(recorder: Recorder, tmp_path: Path, round_: int) -> None:
    sites = site_toml("main", f"http://127.0.0.1:{recorder.port}", hosts=("127.0.0.1", "localhost"))
    proxy = launch_proxy(tmp_path, 0, sites)
    acknowledged: list[tuple[str, str]] = []
    lock = threading.Lock()
    enough = threading.Event()
    stop = threading.Event()

    def client(number: int) -> None:
        index = 0
        while not stop.is_set():
            action = ACTIONS[(number + index) % len(ACTIONS)]
            index += 1
            principal = _decide(proxy.port, action)
            if principal is not None:
                with lock:
                    acknowledged.append((principal, action))
                    if len(acknowledged) >= 40 + 20 * round_:
                        enough.set()

    threads = [threading.Thread(target=client, args=(number,), daemon=True) for number in range(8)]
    for thread in threads:
        thread.start()
    try:
        assert enough.wait(60), "the burst never got going"
        _kill_tree(proxy.process.pid)  # in the middle of the burst: requests in flight on every client
    finally:
        stop.set()
        for thread in threads:
            thread.join(20)
        _kill_tree(proxy.process.pid)
        proxy.process.wait(10)
    with lock:
        acked = list(acknowledged)
    assert len(acked) >= 40
    store = open_store(f"sqlite:///{tmp_path / 'data0' / 'consent-records.db'}")
    try:
        events = list(store.events("main"))
    finally:
        store.close()
    stored = {(event.principal, event.method) for event in events}
    missing = [row for row in acked if row not in stored]
    assert missing == [], f"{len(missing)} acknowledged decisions lost"
    assert [event.seq for event in events] == list(range(1, len(events) + 1))  # no gap, no repeat
    # the proxy starts again on the same data, and the log goes on from where it was
    again = launch_proxy(tmp_path, 0, sites)  # the same configuration and data directory
    try:
        assert _decide(again.port, "accept_all") is not None
    finally:
        again.stop(signal.SIGTERM)
    store = open_store(f"sqlite:///{tmp_path / 'data0' / 'consent-records.db'}")
    try:
        assert [event.seq for event in store.events("main")] == list(range(1, len(events) + 2))
    finally:
        store.close()
