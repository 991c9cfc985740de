"""ui.first_style: the demo opens on a learned style fetched in the background from start-up, or
on the built-in default where that style cannot be had."""

from __future__ import annotations

import threading
import time

import pytest

import portrait_stylize as ps
from portrait_stylize.sources import github
from portrait_stylize.ui import FirstStyle

from animegan_reference import published_state_dict
from fake_github import FakeGitHub
from fake_hub import git_blob_sha1
from helpers import write_registry

REPO, COMMIT, PATH = "owner/animegan", "0" * 40, "weights/model.pt"


@pytest.fixture
def served(online, tmp_path):
    """A GitHub stand-in serving a learned style registered as 'learned'."""
    import torch

    torch.save(published_state_dict(), tmp_path / "model.pt")
    data = (tmp_path / "model.pt").read_bytes()
    ps.pipeline.STYLIZERS.clear()  # no stylizer of another test's 'learned'
    with FakeGitHub() as fake:
        online["monkeypatch"].setenv(github.ENV_RAW, fake.url)
        fake.add_file(REPO, COMMIT, PATH, data)
        write_registry(online, {"learned": {"kind": "github", "repo_id": REPO, "revision": COMMIT, "filename": PATH,
                                            "git_blob_sha1": git_blob_sha1(data), "arch": "animegan2",
                                            "licence": "mit"}})
        yield fake


def load_on_torch(name):  # "auto" would time the backends first: seconds the test does not need
    return ps.pipeline.cached_stylizer(name, backend="torch")


def test_online_it_is_fetched_before_anyone_asks(served):
    first = FirstStyle("learned", load=load_on_torch)
    assert first() == "learned"  # shown while it is still being fetched
    assert first.wait(60) and first() == "learned" and first.failure is None
    assert served.requests == [f"{REPO}/{COMMIT}/{PATH}"]
    assert {s.name: s.available_offline for s in ps.list_styles("learned")} == {"learned": True}
    load_on_torch("learned")  # the first click: already loaded, nothing fetched
    assert len(served.requests) == 1


def test_start_up_does_not_wait_for_the_fetch(online):
    release = threading.Event()
    start = time.monotonic()
    first = FirstStyle("anime", load=lambda name: release.wait(30))
    assert time.monotonic() - start < 1.0 and first() == "anime" and not first.wait(0.05)
    release.set()
    assert first.wait(5) and first() == "anime"


def test_a_failed_fetch_falls_back_to_the_built_in(served):
    served.status[f"{REPO}/{COMMIT}/{PATH}"] = 503
    first = FirstStyle("learned", load=load_on_torch)
    assert first.wait(60) and first() == "toon"
    assert "HTTP 503" in first.failure and "/tmp" not in first.failure


def test_offline_it_is_the_built_in_and_nothing_is_fetched(served, monkeypatch):
    monkeypatch.setenv("PORTRAIT_STYLIZE_OFFLINE", "1")
    first = FirstStyle("learned")
    assert first() == "toon" and "offline" in first.failure and served.requests == []


@pytest.mark.parametrize("name", [None, "no-such-style", "toon"])
def test_no_learned_style(env, name):
    first = FirstStyle(name)
    assert first() == "toon" and first.wait(0)
