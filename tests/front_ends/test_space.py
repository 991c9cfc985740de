"""space.yaml and the README front matter the Hub reads stay equal, and match what the repo runs
(including the hardware space_policy.py's limits are sized for)."""

from __future__ import annotations

import re

import yaml

from portrait_stylize.sources.registry import load_registry

import space_policy
from helpers import REPO


def _front_matter() -> dict:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, flags=re.S)
    assert match, "README.md must start with the Space's YAML front matter"
    return yaml.safe_load(match.group(1))


def test_space_yaml_equals_readme_front_matter():
    space = yaml.safe_load((REPO / "space.yaml").read_text(encoding="utf-8"))
    assert space == _front_matter()


def test_space_settings_match_the_repository():
    space = _front_matter()
    assert space["sdk"] == "gradio" and (REPO / space["app_file"]).is_file()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO / "requirements.txt").read_text(), flags=re.M))
    assert pins["gradio"] == space["sdk_version"]
    assert re.fullmatch(r"3\.\d+", space["python_version"]) and space["suggested_hardware"] == "cpu-basic"
    hub = sorted({s.repo_id for s in load_registry().styles.values() if s.kind == "hub"})
    assert space["models"] == hub
    assert len(space["short_description"]) <= 60


def test_space_policy_is_sized_for_the_space_hardware():
    """The demo's limits (queue, sizes, clip work) assume the Space's hardware: moving the Space to
    other hardware must come with a look at space_policy.py."""
    assert _front_matter()["suggested_hardware"] == space_policy.HARDWARE
