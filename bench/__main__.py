"""`python -m bench <what>`: the benchmark harness (not part of CI's pass/fail).

python -m bench compare   side by side: acqd vs a bare pipeline, rsync, cp, zstd, acquire-zarr
python -m bench tiers     throughput of the file, S3 and SFTP tiers on loopback
python -m bench torture   the long crash run (SIGKILLs) whose figures go in RELIABILITY.md
python -m bench mutants   the mutation list: each safeguard removed in turn must make a test fail
python -m bench codecs    every real file shipped with its profile: stored vs best candidate vs source
python -m bench readme-tables   regenerate README.md's detector and measured-ratio tables (a fresh run)
python -m bench smallfiles  5,000 small files: acqd run --once vs rsync -a + sync
python -m bench catalog   the facility catalog's ingest rate into a real PostgreSQL (records/s)
python -m bench camera    a camera writing at a fixed rate while acqd catches up a backlog beside it
python -m bench stream    last byte -> verified for a simulated K3 writing movies: whole file vs tail-follow
python -m bench facility  the facility views over 10^6 catalogued files: usage, the streamed plan, EXPLAIN
python -m bench rate      the camera rate acqd keeps up with per core count, and its latency (a plot)
python -m bench cores     every core on one movie: 1 vs 2 threads on one K3 movie; TIFF codecs per strip
python -m bench holdrecords   the holds' records on the tiers: sync cost per sweep with N holds (folder, S3)
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "compare": "bench.compare",
    "tiers": "bench.tiers",
    "torture": "bench.torture",
    "resources": "bench.resources",
    "report": "bench.report",
    "mutants": "bench.mutants",
    "codecs": "bench.codecs",
    "readme-tables": "bench.readme_tables",
    "smallfiles": "bench.smallfiles",
    "catalog": "bench.catalog",
    "camera": "bench.camera",
    "stream": "bench.stream",
    "rate": "bench.rate",
    "facility": "bench.facility",
    "cores": "bench.cores",
    "holdrecords": "bench.holdrecords",
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__)
        raise SystemExit(2)
    mod = importlib.import_module(COMMANDS[sys.argv[1]])
    mod.main(sys.argv[2:])


if __name__ == "__main__":
    main()
