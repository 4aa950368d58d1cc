"""The cache directory: builds left by killed runs are removed, live ones kept."""

from __future__ import annotations

from filelock import FileLock

from bertlab.data.cache import cached_dir, entry_info


def test_builds_left_by_killed_runs_are_removed_and_live_ones_kept(tmp_path):
    kind = tmp_path / "pretraining"
    abandoned = kind / "0123abcd.tmp-4000000"  # its build was killed: nobody holds its lock
    live = kind / "4567cdef.tmp-4000001"
    for directory in (abandoned, live):
        directory.mkdir(parents=True)
        (directory / "train-00000.tokens.npy").write_bytes(b"partial")
    with FileLock(str(kind / "4567cdef") + ".lock"):  # being built by another process
        entry = cached_dir(tmp_path, "pretraining", "89ab", lambda d: {"built": True})
        assert not abandoned.exists() and live.exists()
    assert entry_info(entry) == {"built": True}
