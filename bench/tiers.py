"""Throughput of each tier backend on loopback: the same files shipped by `acqd run --once` to a
local folder, to SeaweedFS over S3 and to OpenSSH's sshd over SFTP, verification on.

    python -m bench tiers [--gib 1] [--runs 3]

The data is incompressible-half/zero-half files and the copy layout without compression, so the
figure is the transport (write, read back, verify), not a codec.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.servers import SeaweedS3, Sshd, weed_binary


def make_files(root: Path, gib: float, size_mib: int = 64) -> int:
    rng = random.Random(5)
    n = max(1, int(gib * 1024 / size_mib))
    total = 0
    for i in range(n):
        data = rng.randbytes(size_mib << 19) + bytes(size_mib << 19)
        (root / f"movie_{i:03d}.raw").write_bytes(data)
        total += len(data)
    return total


def run_once(watch: Path, tier_yaml: str, work: Path) -> float:
    state = work / f"state-{uuid.uuid4().hex[:8]}"
    cfg = work / "acqd.yaml"
    cfg.write_text(
        f"""instrument: bench
state_dir: {state}
watch:
  - {{path: {watch}, settle: 0.1s, placement: {{compress: none, release_local: never}}}}
tiers:
{tier_yaml}
limits: {{concurrent_files: 2, io_threads: 4, chunk_bytes: 8MiB, inflight_bytes: 256MiB}}
"""
    )
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "acqd", "run", "--once", "--retry-for", "10s", "--config", str(cfg)],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"acqd failed:\n{r.stderr[-3000:]}")
    shutil.rmtree(state)
    return wall


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench tiers", description=__doc__)
    ap.add_argument("--gib", type=float, default=1.0, help="data per run (GiB)")
    ap.add_argument("--runs", type=int, default=3, help="runs per backend (median reported)")
    ap.add_argument("--s3-part-size", default="16MiB", help="the S3 tier's part_size (objects above it go multipart)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="acqd-bench-tiers-") as tmp:
        work = Path(tmp)
        watch = work / "acq"
        watch.mkdir()
        total = make_files(watch, args.gib)
        weed = weed_binary()
        sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
        s3 = SeaweedS3(work / "seaweedfs", weed) if weed else None
        sshd = Sshd(work / "sshd", sshd_bin) if os.path.exists(sshd_bin) else None
        try:
            backends: dict[str, object] = {}
            backends["file"] = lambda i: f'  central: {{url: "file://{work}/central-{i}"}}'
            if s3 is not None:
                s3.start()

                def s3_yaml(i: int) -> str:
                    bucket = s3.bucket(f"bench-{uuid.uuid4().hex[:10]}")
                    o = ", ".join(f"{k}: {v}" for k, v in s3.options(part_size=args.s3_part_size).items())
                    return f'  central: {{url: "s3://{bucket}/acqd", options: {{{o}}}}}'

                backends["s3 (SeaweedFS)"] = s3_yaml
            if sshd is not None:
                sshd.start()

                def sftp_yaml(i: int) -> str:
                    root = work / f"sftp-{i}"
                    o = ", ".join(f"{k}: {v}" for k, v in sshd.options().items())
                    return f'  central: {{url: "{sshd.url(root)}", options: {{{o}}}}}'

                backends["sftp (OpenSSH)"] = sftp_yaml
            walls: dict[str, list[float]] = {k: [] for k in backends}
            for i in range(args.runs):  # alternate backends within each round
                for name, make in backends.items():
                    walls[name].append(run_once(watch, make(i), work))  # type: ignore[operator]
                    for d in work.glob(f"*-{i}"):
                        if d.is_dir() and d.name.startswith(("central-", "sftp-")):
                            shutil.rmtree(d)
        finally:
            if s3 is not None:
                s3.stop()
            if sshd is not None:
                sshd.stop()
    print(f"{total / 2**30:.2f} GiB in {total // (64 << 20)} files, copy layout, verification on; {args.runs} runs")
    print(f"{'backend':<18} {'median s':>9} {'GB/s':>7}   runs")
    for name, w in walls.items():
        med = statistics.median(w)
        print(f"{name:<18} {med:9.2f} {total / med / 1e9:7.3f}   {', '.join(f'{x:.2f}' for x in w)}")


if __name__ == "__main__":
    main()
