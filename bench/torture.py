"""The long crash run: `python -m bench torture --kills 1000` (figures for RELIABILITY.md).

Runs the same harness as the CI torture test (tests/torture/harness.py) for as many SIGKILLs as
asked, prints the figures as JSON and writes them to bench/results/torture-<seed>-<kills>.json.
Exit status 1 if any invariant was broken.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.torture.harness import run


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench torture", description=__doc__)
    ap.add_argument("--kills", type=int, default=1000, help="SIGKILLs to deliver (default 1000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=None, help="where the folders go (default: a temp dir)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="acqd-torture-", dir=args.workdir) as d:
        fig = run(Path(d), args.kills, args.seed, progress=True)
    doc = {
        "command": f"python -m bench torture --kills {args.kills} --seed {args.seed}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "machine": f"{platform.machine()}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
        **fig.as_dict(),
    }
    out = Path(__file__).parent / "results" / f"torture-{args.seed}-{args.kills}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))
    print(f"written to {out}")
    sys.exit(0 if fig.ok() else 1)


if __name__ == "__main__":
    main()
