"""The short torture runs in CI: at least 50 SIGKILLs on the file:// tier, at every named crash
point and at random moments, and 16 on the S3 tier (SeaweedFS on loopback), with the invariants
checked after each kill and at the end (see harness.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from acqd.crash import POINTS
from tests.servers import SeaweedS3
from tests.torture.harness import run, s3_destination

pytestmark = pytest.mark.slow


def test_fifty_kills_lose_nothing(tmp_path: Path) -> None:
    fig = run(tmp_path, kills=50, seed=20261122)
    assert fig.problems == []
    assert fig.kills >= 50
    # `during_commit` exists only on object stores (a tree copied object by object): the S3 run hits it
    assert set(fig.named_kills) == set(POINTS) - {"during_commit"}, f"not every crash point was hit: {fig.named_kills}"
    assert fig.random_kills > 0
    assert fig.files > 50 and fig.objects_checked >= fig.files
    assert (fig.lost, fig.corrupt, fig.duplicates, fig.unverified_releases, fig.stale_temporaries_at_end) == (
        0,
        0,
        0,
        0,
        0,
    )


def test_s3_kills_lose_nothing(tmp_path: Path, s3_server: SeaweedS3) -> None:
    fig = run(tmp_path, kills=16, seed=20261202, dest=s3_destination(s3_server))
    assert fig.problems == []
    assert fig.kills >= 16 and fig.random_kills > 0 and sum(fig.named_kills.values()) > 0
    assert fig.files > 16 and fig.objects_checked >= fig.files
    assert (fig.lost, fig.corrupt, fig.duplicates, fig.unverified_releases, fig.stale_temporaries_at_end) == (
        0,
        0,
        0,
        0,
        0,
    )


def test_unknown_crash_point_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-c", "import acqd.crash"],
        env={"ACQD_CRASH_AT": "after_lunch", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "unknown crash point 'after_lunch'" in r.stderr
