"""download(): resumable, locked, verified while streaming, against a real server on 127.0.0.1.

Each case runs with the standard-library transport and, where conda imports, through conda's
session (auth, proxies, retries) as well.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading

import pytest
from conftest import HAVE_CONDA

from conda_cache_plus.exceptions import (
    ChecksumMismatchError,
    DownloadCancelled,
    DownloadError,
    OfflineError,
    SizeMismatchError,
)
from conda_cache_plus.gateways.download import download, path_to_url
from conda_cache_plus.ui.output import Run

PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


@pytest.fixture(params=["stdlib", "conda"])
def run(request, monkeypatch):
    if request.param == "conda":
        if not HAVE_CONDA:
            pytest.skip("conda is not importable here")
        # One try per request: a retried read timeout would make the slow-server case slow.
        monkeypatch.setenv("CONDA_REMOTE_MAX_RETRIES", "0")
        monkeypatch.setenv("CONDA_REMOTE_READ_TIMEOUT_SECS", "1.0")
        from conda.base.context import reset_context
        from conda.gateways.connection.session import CondaSession, get_session

        reset_context()
        get_session.cache_clear()
        CondaSession.cache_clear()
        yield Run(conda=True)
        get_session.cache_clear()
        CondaSession.cache_clear()
        return
    monkeypatch.setenv("CONDA_REMOTE_READ_TIMEOUT_SECS", "1.0")
    yield Run(conda=False)


@pytest.fixture
def served(http_server):
    (http_server.directory and os.makedirs(os.path.join(http_server.directory, "noarch")))
    with open(os.path.join(http_server.directory, "noarch", "p-1-0.conda"), "wb") as fh:
        fh.write(PAYLOAD)
    return http_server, http_server.url("noarch/p-1-0.conda"), "noarch/p-1-0.conda"


@pytest.fixture
def pkgs(tmp_path):
    d = tmp_path / "pkgs"
    d.mkdir()
    (d / "urls.txt").write_text("")
    return d


def sha_of(path) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def test_download_verifies_and_records_url(served, pkgs, run):
    _srv, url, _rel = served
    target = str(pkgs / "p-1-0.conda")
    seen = []
    res = download(url, target, size=len(PAYLOAD), sha256=SHA, progress=seen.append, run=run)
    assert sha_of(target) == SHA
    assert (res.size, res.sha256, res.md5) == (len(PAYLOAD), SHA, MD5)
    assert res.transferred == len(PAYLOAD) and res.resumed_from == 0
    assert not os.path.exists(target + ".partial")
    assert (pkgs / "urls.txt").read_text() == url + "\n"
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)


def test_resume_after_cut_connection(served, pkgs, run):
    srv, url, rel = served
    srv.behaviour.cut_after["/" + rel] = 100_000
    target = str(pkgs / "p-1-0.conda")
    with pytest.raises(DownloadError, match="resumed"):
        download(url, target, size=len(PAYLOAD), sha256=SHA, run=run)
    assert os.path.getsize(target + ".partial") == 100_000  # kept for the resume
    assert not os.path.exists(target)
    assert (pkgs / "urls.txt").read_text() == ""

    res = download(url, target, size=len(PAYLOAD), sha256=SHA, run=run)
    reqs = srv.requests_for(rel)
    assert [r["range"] for r in reqs] == [None, "bytes=100000-"]
    assert res.resumed_from == 100_000 and res.transferred == len(PAYLOAD) - 100_000
    assert sha_of(target) == SHA and not os.path.exists(target + ".partial")


def test_server_ignoring_range_restarts(served, pkgs, run):
    srv, url, rel = served
    srv.behaviour.no_range.add("/" + rel)
    target = str(pkgs / "p-1-0.conda")
    with open(target + ".partial", "wb") as fh:
        fh.write(PAYLOAD[:50_000])
    res = download(url, target, size=len(PAYLOAD), sha256=SHA, run=run)
    assert srv.requests_for(rel)[0]["range"] == "bytes=50000-"
    assert res.transferred == len(PAYLOAD)
    assert res.resumed_from == 0  # a 200 with everything: nothing was resumed
    assert sha_of(target) == SHA


def test_bad_partial_is_retried_from_scratch(served, pkgs, run):
    srv, url, rel = served
    target = str(pkgs / "p-1-0.conda")
    with open(target + ".partial", "wb") as fh:
        fh.write(b"\0" * 50_000)  # right length, wrong bytes: the resumed file cannot verify
    download(url, target, size=len(PAYLOAD), sha256=SHA, run=run)
    assert [r["range"] for r in srv.requests_for(rel)] == ["bytes=50000-", None]
    assert sha_of(target) == SHA


def test_no_resume_without_checksum(served, pkgs, run):
    srv, url, rel = served
    target = str(pkgs / "p-1-0.conda")
    with open(target + ".partial", "wb") as fh:
        fh.write(PAYLOAD[:50_000])
    download(url, target, run=run)  # nothing to verify a resumed file against
    assert srv.requests_for(rel)[0]["range"] is None
    assert sha_of(target) == SHA


def test_checksum_mismatch_touches_nothing(served, pkgs, run):
    _srv, url, _rel = served
    target = str(pkgs / "p-1-0.conda")
    wrong = "0" * 64
    with pytest.raises(ChecksumMismatchError) as info:
        download(url, target, size=len(PAYLOAD), sha256=wrong, run=run)
    msg = str(info.value)
    assert wrong in msg and SHA in msg and "sha256" in msg
    assert (info.value.expected, info.value.actual) == (wrong, SHA)
    assert sorted(os.listdir(pkgs)) == ["urls.txt"]
    assert (pkgs / "urls.txt").read_text() == ""


def test_md5_used_when_no_sha256(served, pkgs, run):
    _srv, url, _rel = served
    target = str(pkgs / "p-1-0.conda")
    with pytest.raises(ChecksumMismatchError, match="md5"):
        download(url, target, md5="f" * 32, run=run)
    assert not os.path.exists(target) and not os.path.exists(target + ".partial")
    download(url, target, md5=MD5, run=run)
    assert sha_of(target) == SHA


def test_size_mismatch(served, pkgs, run):
    _srv, url, _rel = served
    target = str(pkgs / "p-1-0.conda")
    with pytest.raises(SizeMismatchError) as info:
        download(url, target, size=1000, run=run)
    assert info.value.expected == 1000 and "1000" in str(info.value)
    assert sorted(os.listdir(pkgs)) == ["urls.txt"]


def test_404_is_clear_and_leaves_nothing(served, pkgs, run):
    _srv, url, _rel = served
    target = str(pkgs / "q-1-0.conda")
    with pytest.raises(DownloadError) as info:
        download(url.replace("p-1-0", "q-1-0"), target, size=10, sha256=SHA, run=run)
    assert info.value.status == 404 and "404" in str(info.value)
    assert sorted(os.listdir(pkgs)) == ["urls.txt"]


def test_too_slow_server_times_out_and_keeps_partial(served, pkgs, run):
    srv, url, rel = served
    srv.behaviour.stall["/" + rel] = 3.0  # headers sent, then silence beyond the read timeout
    target = str(pkgs / "p-1-0.conda")
    with pytest.raises(DownloadError, match=r"(?i)timed out|timeout"):
        download(url, target, size=len(PAYLOAD), sha256=SHA, run=run)
    assert os.path.exists(target + ".partial") and not os.path.exists(target)


def test_offline_refuses_network_but_not_files(served, pkgs, run, tmp_path):
    srv, url, _rel = served
    run.offline = True
    target = str(pkgs / "p-1-0.conda")
    with pytest.raises(OfflineError):
        download(url, target, size=len(PAYLOAD), sha256=SHA, run=run)
    assert srv.requests == [] and sorted(os.listdir(pkgs)) == ["urls.txt"]
    local = os.path.join(srv.directory, "noarch", "p-1-0.conda")
    download(path_to_url(local), target, size=len(PAYLOAD), sha256=SHA, run=run)
    assert sha_of(target) == SHA
    assert (pkgs / "urls.txt").read_text() == path_to_url(local) + "\n"


def test_file_url_is_verified(tmp_path, pkgs):
    src = tmp_path / "p-1-0.conda"
    src.write_bytes(PAYLOAD)
    target = str(pkgs / "p-1-0.conda")
    with pytest.raises(ChecksumMismatchError):
        download(path_to_url(str(src)), target, sha256="1" * 64)
    assert sorted(os.listdir(pkgs)) == ["urls.txt"]
    with pytest.raises(DownloadError, match="no such file"):
        download(path_to_url(str(tmp_path / "nope.conda")), target)
    res = download(path_to_url(str(src)), target, sha256=SHA, size=len(PAYLOAD))
    assert res.sha256 == SHA and sha_of(target) == SHA


def test_cancel_keeps_partial(served, pkgs, run):
    srv, url, rel = served
    srv.behaviour.slow["/" + rel] = 0.02
    target = str(pkgs / "p-1-0.conda")
    cancel = threading.Event()

    def progress(fraction):
        if fraction > 0.1:
            cancel.set()

    with pytest.raises(DownloadCancelled):
        download(
            url, target, size=len(PAYLOAD), sha256=SHA, progress=progress, cancel=cancel, run=run
        )
    assert 0 < os.path.getsize(target + ".partial") < len(PAYLOAD)
    download(url, target, size=len(PAYLOAD), sha256=SHA, run=run)
    assert srv.requests_for(rel)[-1]["range"] is not None and sha_of(target) == SHA


def test_waits_for_condas_partial_lock(served, pkgs):
    """Another process holding conda's byte-21 lock on the partial makes us wait, then we see
    its finished file and reuse it instead of downloading again."""
    srv, url, rel = served
    target = str(pkgs / "p-1-0.conda")
    partial = target + ".partial"
    src = os.path.join(srv.directory, rel)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, shutil, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.lockf(fd, fcntl.LOCK_EX, 1, 21)\n"
            "print('locked', flush=True)\n"
            "time.sleep(0.5)\n"
            "shutil.copyfile(sys.argv[2], sys.argv[1])\n"
            "os.rename(sys.argv[1], sys.argv[3])\n",
            partial,
            src,
            target,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    res = download(url, target, size=len(PAYLOAD), sha256=SHA)
    holder.wait(timeout=30)
    assert res.reused and srv.requests == []
    assert sha_of(target) == SHA and not os.path.exists(partial)


# -- the cancel watcher: one thread per flag, for every transfer under it ----------------------


def test_one_watcher_shuts_every_open_transfer_and_spares_closed_ones():
    import socket
    import threading

    from conda_cache_plus.gateways.download import _CancelWatch, _Watcher

    cancel = threading.Event()
    pairs = [socket.socketpair() for _ in range(3)]
    watches = [_CancelWatch(cancel) for _ in pairs]
    for watch, (ours, _peer) in zip(watches, pairs, strict=True):
        watch.watch(ours)
    assert set(_Watcher._by_flag[id(cancel)].socks) == set(watches)  # one watcher for all
    watches[2].close()  # this transfer is over: its socket may be kept alive for the next one
    cancel.set()
    for ours, _peer in pairs[:2]:
        ours.settimeout(5)
        assert ours.recv(1) == b""  # shut down: the blocked read returns at once
    pairs[2][1].sendall(b"x")
    pairs[2][0].settimeout(5)
    assert pairs[2][0].recv(1) == b"x"  # still open
    for a, b in pairs:
        a.close()
        b.close()
