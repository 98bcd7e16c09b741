"""The session check for leaked deps tags finds this session's tags and only those (no engine here)."""

from __future__ import annotations

import shutil

from docker_support import session_deps_tags

from cloudbuilder.binary import deps_tag


def test_a_session_tag_is_found_by_its_dist_dir_also_after_the_dist_dir_is_gone(tmp_path):
    kept, removed = tmp_path / "a" / "dist", tmp_path / "b" / "deep" / "dist"
    other = tmp_path / "c" / "d"  # a dist dir not named dist, still there
    for d in (kept, removed, other):
        d.mkdir(parents=True)
    shutil.rmtree(removed)  # a fixture removed its dist/ (its parent is still there)
    elsewhere = deps_tag(tmp_path.parent / "another-session" / "dist")
    tags = {deps_tag(kept), deps_tag(removed), deps_tag(other), elsewhere, "orangescrum-cloud-deps:0123456789abcdef"}
    assert session_deps_tags([tmp_path], tags) == {deps_tag(kept), deps_tag(removed), deps_tag(other)}


def test_no_tag_no_root(tmp_path):
    assert session_deps_tags([tmp_path], set()) == set()
    assert session_deps_tags([tmp_path / "missing"], {deps_tag(tmp_path / "missing" / "dist")}) == set()
