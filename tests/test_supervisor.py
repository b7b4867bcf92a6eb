"""Several workers (issue 21): forked from one built configuration, they share its pages; a reload forks new
workers from the file read again and retires the old ones, which finish what they have in flight, and a
request on an idle keep-alive connection of a draining worker is answered (with `Connection: close`), never
cut off."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import Proxy, Upstream, recv_response, serve_page, site_toml, status_of

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "load_tests"))
from scale_sites import host_of, sites_text

PAGE = "<!doctype html><html lang=\"en\"><head><title>t</title></head><body><p>hello</p></body></html>"


def _children(pid: int) -> list[int]:
    return [int(item) for item in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _anonymous_kb(pid: int) -> tuple[int, int]:
    """A process's resident anonymous memory (heap and unnamed mappings) and how much of it is shared, in KiB.

    Processes started apart share no anonymous page; a forked one shares with its parent every page neither
    has written to since."""
    resident = shared = 0
    anonymous = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", fields[0]):
            anonymous = fields[4] == "0" and (len(fields) == 5 or fields[5] == "[heap]")
        elif anonymous and fields[0] == "Rss:":
            resident += int(fields[1])
        elif anonymous and fields[0] in ("Shared_Clean:", "Shared_Dirty:"):
            shared += int(fields[1])
    return resident, shared


def _wait_for(proxy: Proxy, text: str, count: int = 1) -> str:
    deadline = time.monotonic() + 120
    while proxy.log().count(text) < count:
        assert proxy.process.poll() is None, proxy.log()
        assert time.monotonic() < deadline, f"no {text!r} in time:\n{proxy.log()[-3000:]}"
        time.sleep(0.05)
    return proxy.log()


def _get(port: int, host: str, path: str = "/") -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers={"Host": host, "Accept": "text/html"})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


@pytest.mark.timeout(300)
def test_workers_share_the_configuration_they_were_forked_from(start_proxy: Any) -> None:
    sites = 1000
    with serve_page(PAGE) as port:
        proxy = start_proxy(sites_text(sites, f"http://127.0.0.1:{port}"), server={"workers": 2})
        for index in range(0, sites, 25):  # both workers serve (and so write to some of the pages) first
            assert _get(proxy.port, host_of(index))[0] == 200
        workers = _children(proxy.process.pid)
        assert len(workers) == 2
        for pid in workers:
            resident, shared = _anonymous_kb(pid)
            # Measured: 64 % shared at 1,000 sites; a worker that built its own copy (spawned): 0 %.
            assert shared >= resident / 2, (pid, resident, shared)


def _host_seen(body: str) -> str:
    headers = {name.lower(): value for name, value in json.loads(body)["headers"]}
    return str(headers["host"])


@pytest.mark.timeout(300)
def test_a_reload_forks_new_workers_and_the_old_ones_finish_what_they_have(start_proxy: Any,
                                                                            upstream: Upstream) -> None:
    def sites(upstream_host: str) -> str:
        return site_toml("main", upstream.url, read_timeout=30, upstream_host=upstream_host)

    # A long keep-alive timeout: the idle connection below must still be open when the test gets to it.
    proxy = start_proxy(sites("before.internal"), server={"workers": 2}, limits={"keepalive_timeout": 120})
    first = sorted(_children(proxy.process.pid))
    assert len(first) == 2

    idle = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)  # kept alive on an old worker
    idle.request("GET", "/idle", headers={"Host": "localhost"})
    response = idle.getresponse()
    assert response.status == 200 and _host_seen(response.read().decode()) == "before.internal"
    assert response.getheader("Connection") != "close"

    with socket.create_connection(("127.0.0.1", proxy.port), timeout=60) as slow:
        slow.sendall(b"GET /stall?seconds=3 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        deadline = time.monotonic() + 30
        while not any(seen.raw_path.startswith("/stall") for seen in upstream.seen):
            assert time.monotonic() < deadline, "the slow request did not reach the upstream"
            time.sleep(0.02)

        proxy.config_path.write_text(proxy.config_path.read_text().replace("before.internal", "after.internal"))
        proxy.process.send_signal(signal.SIGHUP)
        log = _wait_for(proxy, "replaced by")
        replaced = re.search(r"workers \[(.*?)\] replaced by \[(.*?)\]", log)
        assert replaced is not None
        assert sorted(int(pid) for pid in replaced.group(1).split(", ")) == first
        second = sorted(int(pid) for pid in replaced.group(2).split(", "))
        assert len(second) == 2 and not set(second) & set(first)

        status, body = _get(proxy.port, "localhost", "/next")  # a new connection: a new worker, the new file
        assert status == 200 and _host_seen(body) == "after.internal"

        # The old worker drains: the idle connection's next request is still answered, on the configuration
        # it started with, and told to close.
        idle.request("GET", "/idle-again", headers={"Host": "localhost"})
        response = idle.getresponse()
        assert response.status == 200 and _host_seen(response.read().decode()) == "before.internal"
        assert response.getheader("Connection") == "close"
        idle.close()

        answer = recv_response(slow)  # in flight during the reload: finished whole on the old worker
        assert status_of(answer) == 200 and answer.endswith(b"late")

    deadline = time.monotonic() + 60
    while set(_children(proxy.process.pid)) != set(second):  # the retired workers exit once drained
        assert time.monotonic() < deadline, (_children(proxy.process.pid), second)
        time.sleep(0.1)

    proxy.config_path.write_text(proxy.config_path.read_text().replace('upstream = "http', 'upstream = 5 #"', 1))
    proxy.process.send_signal(signal.SIGHUP)
    _wait_for(proxy, "reload refused")
    assert "sites.main.upstream" in proxy.log()  # the error names the site and the key
    status, body = _get(proxy.port, "localhost", "/after-refusal")
    assert status == 200 and _host_seen(body) == "after.internal"  # the running configuration still serves
    assert sorted(_children(proxy.process.pid)) == second  # and no worker was replaced


class _Application:
    """What the supervisor uses of an application: a runtime, reload and restore."""

    def __init__(self) -> None:
        self.runtime = "running"

    def reload(self) -> bool:
        self.runtime = "new"
        return True

    def restore(self, runtime: str) -> None:
        self.runtime = runtime


def _worker(config: Any, sockets: Any, log_level: str, application: _Application, pipe: int,
            supervisor: int) -> None:
    """A stand-in worker: one forked from the running configuration serves; one from the new one crashes."""
    if application.runtime == "running":
        os.write(pipe, b"s")
        time.sleep(120)
    os._exit(3)


def test_a_reload_whose_new_workers_do_not_serve_keeps_the_old_ones(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    from consentproxy.server import supervisor

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(supervisor, "_worker_main", _worker)
    config = SimpleNamespace(server=SimpleNamespace(workers=2, graceful_timeout=1))
    application = _Application()
    chief = supervisor.Supervisor(config, [], "info", application)  # type: ignore[arg-type]
    chief.workers = [chief._start_worker() for _ in range(2)]
    try:
        assert chief._wait_for(chief.workers, b"s", 60)
        old = list(chief.workers)
        chief._reload()
        assert chief.workers == old and all(worker.process.is_alive() for worker in old)
        assert application.runtime == "running"  # what a replaced worker would be forked from
        assert not chief.retiring
    finally:
        for worker in chief.workers:
            worker.process.kill()
            worker.process.join(5)


def test_the_metrics_directory_is_made_before_prometheus_client_and_only_that_one_is_removed(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import prometheus_client  # noqa: F401  (imported by now in any case: the point is that it is)

    from consentproxy.observability import multiprocess

    with pytest.raises(RuntimeError, match="before anything imports prometheus_client"):
        multiprocess.share_metrics()  # too late: its metrics would not be shared
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(theirs))
    multiprocess.unshare_metrics()  # a directory named from outside is the operator's
    assert theirs.is_dir() and os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(theirs)


def test_workers_whose_supervisor_is_killed_exit(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url), server={"workers": 2})
    workers = _children(proxy.process.pid)
    assert len(workers) == 2
    proxy.process.kill()  # SIGKILL: the supervisor cannot stop them itself
    proxy.process.wait(10)
    deadline = time.monotonic() + 60
    while [pid for pid in workers if Path(f"/proc/{pid}").exists()]:  # orphans are reaped by init at once
        assert time.monotonic() < deadline, "the workers serve on without their supervisor"
        time.sleep(0.1)
