"""Atomic text writes replace a planted link instead of writing through it."""

from __future__ import annotations

import os

from bertlab.atomic import write_text_atomically


def test_atomic_text_write_replaces_a_link_and_ignores_a_planted_temporary(tmp_path):
    target, link = tmp_path / "target.txt", tmp_path / "out" / "results.json"
    target.write_text("outside")
    link.parent.mkdir()
    link.symlink_to(target)
    # A link planted where the temporary will go: the stale-temporary sweep removes it,
    # and O_EXCL | O_NOFOLLOW would refuse to write through it anyway.
    (link.parent / f".results.json.tmp-{os.getpid()}").symlink_to(target)
    write_text_atomically(link, "inside")
    assert link.read_text() == "inside" and not link.is_symlink()
    assert target.read_text() == "outside"
    assert sorted(p.name for p in link.parent.iterdir()) == ["results.json"]
