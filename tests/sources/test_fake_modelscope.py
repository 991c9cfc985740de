"""Checks of the ModelScope test double itself (:mod:`fake_modelscope`), with plain httpx requests."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from fake_modelscope import HTML_PAGE, FakeModelScope, sha256_hex

MODEL = "iic/cv_unet_person-image-cartoon_compound-models"
FILES = {
    "cartoon_h.pb": b"\x01head-weights" * 40,
    "cartoon_bg.pb": b"\x02background" * 30,
    "configuration.json": b'{"task": "image-portrait-stylization"}',
    "alpha/mask.pb": b"mask bytes",
    "alpha/deep/x.bin": b"xx",
}


@pytest.fixture
def ms():
    with FakeModelScope() as fake:
        fake.add_model(MODEL, FILES, tags=["v1.0.0", "v1.0.1"])
        yield fake


@pytest.fixture
def client():
    with httpx.Client(timeout=5) as c:
        yield c


def repo_url(ms: FakeModelScope, model: str = MODEL) -> str:
    return f"{ms.endpoint}/api/v1/models/{model}/repo"


def download(client: httpx.Client, ms: FakeModelScope, path: str, revision: str = "v1.0.1", **kw) -> httpx.Response:
    return client.get(repo_url(ms), params={"Revision": revision, "FilePath": path}, **kw)


def test_listing_shape_and_hashes(ms, client):
    r = client.get(repo_url(ms) + "/files", params={"Revision": "v1.0.0", "Recursive": "True"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["Code"] == 200 and body["Success"] is True and body["Message"] == "success"
    files = body["Data"]["Files"]
    blobs = {f["Path"]: f for f in files if f["Type"] == "blob"}
    trees = {f["Path"] for f in files if f["Type"] == "tree"}
    assert set(blobs) == set(FILES) and trees == {"alpha", "alpha/deep"}
    commit = ms.commit(MODEL, "v1.0.0")
    for path, entry in blobs.items():
        assert entry["Sha256"] == sha256_hex(FILES[path]) and entry["Size"] == len(FILES[path])
        assert entry["Name"] == path.rsplit("/", 1)[-1] and entry["Mode"] == "33188"
        assert entry["Revision"] == commit and len(commit) == 40
    # not recursive: the top level only; the commit id works as a revision too
    r = client.get(repo_url(ms) + "/files", params={"Revision": commit})
    top = {(f["Path"], f["Type"]) for f in r.json()["Data"]["Files"]}
    assert top == {("alpha", "tree"), ("cartoon_h.pb", "blob"), ("cartoon_bg.pb", "blob"),
                   ("configuration.json", "blob")}


def test_revisions_and_newer_tag(ms, client):
    ms.add_tag(MODEL, "v2.0.0", files={"cartoon_h.pb": b"new head"})
    r = client.get(f"{ms.endpoint}/api/v1/models/{MODEL}/revisions")
    data = r.json()["Data"]["RevisionMap"]
    assert r.json()["Success"] is True
    assert [b["Revision"] for b in data["Branches"]] == ["master"]
    tags = data["Tags"]
    assert [t["Revision"] for t in tags] == ["v2.0.0", "v1.0.1", "v1.0.0"]  # newest first, as modelscope.cn
    created = [t["CreatedAt"] for t in tags]
    assert created == sorted(set(created), reverse=True) and ms.newest_tag(MODEL) == "v2.0.0"
    # EndTime cuts newer tags off
    r = client.get(f"{ms.endpoint}/api/v1/models/{MODEL}/revisions", params={"EndTime": created[1]})
    assert [t["Revision"] for t in r.json()["Data"]["RevisionMap"]["Tags"]] == ["v1.0.1", "v1.0.0"]
    # old tag keeps its files, the new tag and master have the new ones
    def listing(rev):
        return {f["Path"] for f in client.get(
            repo_url(ms) + "/files", params={"Revision": rev, "Recursive": "true"}).json()["Data"]["Files"]}

    assert "cartoon_bg.pb" in listing("v1.0.1")
    assert listing("v2.0.0") == listing("master") == {"cartoon_h.pb"}
    assert download(client, ms, "cartoon_h.pb", "v2.0.0", follow_redirects=True).content == b"new head"
    assert download(client, ms, "cartoon_h.pb", "v1.0.0", follow_redirects=True).content == FILES["cartoon_h.pb"]


def test_model_without_tags_has_only_master(client):
    with FakeModelScope() as ms:
        ms.add_model("iic/untagged", {"a.pb": b"aaa"}, tags=())
        data = client.get(f"{ms.endpoint}/api/v1/models/iic/untagged/revisions").json()["Data"]["RevisionMap"]
        assert data["Tags"] == [] and [b["Revision"] for b in data["Branches"]] == ["master"]
        r = client.get(repo_url(ms, "iic/untagged") + "/files", params={"Revision": "master"})
        assert [f["Path"] for f in r.json()["Data"]["Files"]] == ["a.pb"]
        r = client.get(repo_url(ms, "iic/untagged") + "/files", params={"Revision": "v1.0.0"})
        assert r.status_code == 404 and r.json()["Code"] == 10010205002


def test_queued_statuses_are_answered_in_turn_then_the_usual_answer(ms, client):
    listing = repo_url(ms) + "/files"
    ms.queue_statuses("listing", [503, 429], retry_after="3")
    ms.queue_statuses("cartoon_h.pb", [502])
    r = client.get(f"{ms.endpoint}/api/v1/models/{MODEL}/revisions")  # other endpoints are unaffected
    assert r.status_code == 200
    first, second, third = (client.get(listing) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (503, 429, 200)
    assert first.headers["retry-after"] == "3" and first.json()["Success"] is False
    assert third.json()["Success"] is True and "retry-after" not in third.headers
    assert download(client, ms, "cartoon_bg.pb", follow_redirects=True).status_code == 200
    assert download(client, ms, "cartoon_h.pb", follow_redirects=True).status_code == 502
    assert download(client, ms, "cartoon_h.pb", follow_redirects=True).content == FILES["cartoon_h.pb"]
    ms.queue_statuses("listing", [403])  # before a fault too
    ms.faults["listing"] = "500"
    assert [client.get(listing).status_code for _ in range(2)] == [403, 500]
    assert ms.queued == {"listing": [], "cartoon_h.pb": []}


def test_download_redirect_range_and_head(ms, client):
    data = FILES["cartoon_h.pb"]
    r = download(client, ms, "cartoon_h.pb")
    assert r.status_code == 302 and r.headers["location"] == f"{ms.endpoint}/blobs/{sha256_hex(data)}"
    r = download(client, ms, "cartoon_h.pb", follow_redirects=True)
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-length"] == str(len(data)) and r.headers["accept-ranges"] == "bytes"
    assert ms.paths()[-2:] == [f"/api/v1/models/{MODEL}/repo", f"/blobs/{sha256_hex(data)}"]
    r = download(client, ms, "cartoon_h.pb", follow_redirects=True, headers={"Range": "bytes=100-"})
    assert r.status_code == 206 and r.content == data[100:]
    assert r.headers["content-range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
    r = download(client, ms, "cartoon_h.pb", follow_redirects=True, headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416
    r = client.head(repo_url(ms), params={"Revision": "v1.0.1", "FilePath": "cartoon_h.pb"}, follow_redirects=True)
    assert r.status_code == 200 and r.headers["content-length"] == str(len(data)) and r.content == b""


def test_no_redirect_mode_and_encoded_path(client):
    with FakeModelScope(redirect=False) as ms:
        ms.add_model(MODEL, FILES)
        url = f"{repo_url(ms)}?Revision=v1.0.0&FilePath=alpha%2Fdeep%2Fx.bin"
        r = client.get(url)
        assert r.status_code == 200 and r.content == b"xx"
        r = client.get(url, headers={"Range": "bytes=1-"})
        assert r.status_code == 206 and r.content == b"x" and r.headers["content-range"] == "bytes 1-1/2"
        assert not any(p.startswith("/blobs/") for p in ms.paths())
        assert ms.requests[0].query == {"Revision": "v1.0.0", "FilePath": "alpha/deep/x.bin"}
        assert ms.requests[0].target.endswith("FilePath=alpha%2Fdeep%2Fx.bin")


@pytest.mark.parametrize("added, asked", [("iic/m", "damo/m"), ("damo/m", "iic/m")])
def test_damo_iic_alias(client, added, asked):
    with FakeModelScope() as ms:
        ms.add_model(added, {"a.pb": b"aaa"})
        for model in (added, asked):
            r = client.get(repo_url(ms, model) + "/files", params={"Revision": "v1.0.0"})
            assert [f["Sha256"] for f in r.json()["Data"]["Files"]] == [sha256_hex(b"aaa")]
            r = client.get(repo_url(ms, model), params={"Revision": "master", "FilePath": "a.pb"},
                           follow_redirects=True)
            assert r.content == b"aaa"
        assert ms.commit(asked) == ms.commit(added)
        r = client.get(repo_url(ms, "other/m") + "/files")
        assert r.status_code == 404


def test_not_found_errors(ms, client):
    for url in (repo_url(ms, "iic/nope") + "/files", f"{ms.endpoint}/api/v1/models/iic/nope/revisions",
                repo_url(ms, "iic/nope") + "?FilePath=a.pb"):
        r = client.get(url)
        assert r.status_code == 404
        assert r.json()["Code"] == 10010205001 and r.json()["Success"] is False
        assert r.json()["Message"] == "model not found"
    r = client.get(repo_url(ms) + "/files", params={"Revision": "v9.9.9"})
    assert r.status_code == 404 and r.json()["Success"] is False and "v9.9.9" in r.json()["Message"]
    r = download(client, ms, "cartoon_h.pb", revision="v9.9.9")
    assert r.status_code == 404 and r.json()["Success"] is False
    r = download(client, ms, "missing.pb")
    assert r.status_code == 404 and r.json()["Success"] is False


@pytest.mark.parametrize("redirect", [True, False])
def test_file_faults(client, redirect):
    data = FILES["cartoon_h.pb"]
    with FakeModelScope(redirect=redirect) as ms:
        ms.add_model(MODEL, FILES)
        def get(**kw):
            return download(client, ms, "cartoon_h.pb", "v1.0.0", follow_redirects=True, **kw)

        ms.faults["cartoon_h.pb"] = "404"
        r = get()
        assert r.status_code == 404 and r.json()["Success"] is False
        ms.faults["cartoon_h.pb"] = "500"
        r = get()
        assert r.status_code == 500 and r.headers["content-type"].startswith("text/plain") and r.text
        ms.faults["cartoon_h.pb"] = "html"
        r = get()
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert r.content == HTML_PAGE
        ms.faults["cartoon_h.pb"] = "wrong-bytes"
        r = get()
        assert r.status_code == 200 and len(r.content) == len(data) and sha256_hex(r.content) != sha256_hex(data)
        r = get(headers={"Range": "bytes=10-"})
        assert r.status_code == 206 and len(r.content) == len(data) - 10 and r.content != data[10:]
        ms.faults["cartoon_h.pb"] = "truncate"
        with pytest.raises(httpx.RemoteProtocolError):
            get()
        with client.stream("GET", repo_url(ms), params={"Revision": "v1.0.0", "FilePath": "cartoon_h.pb"},
                           follow_redirects=True) as r:
            assert r.headers["content-length"] == str(len(data))
            got = b""
            with pytest.raises(httpx.RemoteProtocolError):
                for chunk in r.iter_raw():
                    got += chunk
            assert got == data[: len(data) // 2]
        # other files are unaffected
        assert download(client, ms, "cartoon_bg.pb", "v1.0.0", follow_redirects=True).content == FILES["cartoon_bg.pb"]


def test_stall_times_out_and_stop_is_prompt():
    data = FILES["cartoon_h.pb"]
    ms = FakeModelScope().__enter__()
    stalled = threading.Thread()
    held: list = []
    try:
        ms.add_model(MODEL, FILES)
        ms.faults["cartoon_h.pb"] = "stall"
        with httpx.Client(timeout=httpx.Timeout(5.0, read=1.0)) as c:
            got = b""
            start = time.monotonic()
            with (pytest.raises(httpx.ReadTimeout),
                  c.stream("GET", repo_url(ms), params={"Revision": "v1.0.0", "FilePath": "cartoon_h.pb"},
                           follow_redirects=True) as r):
                assert r.status_code == 200 and r.headers["content-length"] == str(len(data))
                for chunk in r.iter_raw():
                    got += chunk
            assert got == data[: len(data) // 2] and time.monotonic() - start < 4
            # the server keeps answering other requests while one is stalled
            stalled = threading.Thread(target=lambda: held.append(
                _swallow(lambda: httpx.get(f"{repo_url(ms)}?Revision=v1.0.0&FilePath=cartoon_h.pb",
                                           follow_redirects=True, timeout=10))))
            stalled.start()
            time.sleep(0.2)
            r = c.get(repo_url(ms) + "/files")
            assert r.status_code == 200
    finally:
        start = time.monotonic()
        ms.stop()
        assert time.monotonic() - start < 2
    stalled.join(timeout=3)
    assert not stalled.is_alive() and isinstance(held[0], httpx.HTTPError)


def _swallow(fn):
    try:
        return fn()
    except Exception as exc:
        return exc


@pytest.mark.parametrize("key, route", [("listing", "/repo/files"), ("revisions", "/revisions")])
def test_endpoint_faults(ms, client, key, route):
    url = f"{ms.endpoint}/api/v1/models/{MODEL}{route}"
    ms.faults[key] = "404"
    assert client.get(url).status_code == 404 and client.get(url).json()["Success"] is False
    ms.faults[key] = "500"
    assert client.get(url).status_code == 500
    ms.faults[key] = "html"
    r = client.get(url)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    ms.faults[key] = "wrong-bytes"
    with pytest.raises(ValueError):
        client.get(url).json()
    ms.faults[key] = "truncate"
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(url)
    ms.faults[key] = "stall"
    with pytest.raises(httpx.ReadTimeout):
        client.get(url, timeout=httpx.Timeout(5.0, read=0.5))
    del ms.faults[key]
    assert client.get(url).json()["Success"] is True


def test_requests_are_recorded(ms, client):
    download(client, ms, "alpha/mask.pb", follow_redirects=True, headers={"User-Agent": "probe/1", "Range": "bytes=2-"})
    first, second = ms.requests
    assert (first.method, first.path) == ("GET", f"/api/v1/models/{MODEL}/repo")
    assert first.query == {"Revision": "v1.0.1", "FilePath": "alpha/mask.pb"}
    assert first.headers["User-Agent"] == "probe/1"
    assert second.path == f"/blobs/{sha256_hex(FILES['alpha/mask.pb'])}" and second.query == {}
    assert second.headers["Range"] == "bytes=2-"
