"""S3 and SFTP tiers against real servers: what the shared contract cannot say for every backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash

from acqd.config import Config
from acqd.errors import NameTakenError, PermanentError, TransientError
from acqd.storage import ConflictError, DestinationError, open_tier, translate
from acqd.storage.s3 import META_CHECKSUM, S3Tier
from acqd.storage.sftp import SftpTier
from tests.conftest import journal_states, run_acqd, write_config
from tests.servers import SeaweedS3, Sshd

MiB = 2**20


@pytest.fixture
def s3(s3_server: SeaweedS3) -> Iterator[tuple[S3Tier, str]]:
    bucket = s3_server.bucket(f"acqd-{uuid.uuid4().hex[:12]}")
    t = open_tier("central", f"s3://{bucket}/central", s3_server.options(part_size="5MiB", concurrency=3))
    assert isinstance(t, S3Tier)
    yield t, bucket
    t.close()


def _uploads(server: SeaweedS3, bucket: str) -> list[str]:
    return [u["Key"] for u in server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])]  # type: ignore[attr-defined]


def test_s3_objects_carry_acqds_checksum_not_the_etag(s3: tuple[S3Tier, str], s3_server: SeaweedS3) -> None:
    tier, bucket = s3
    small, big = os.urandom(1000), os.urandom(13 * MiB)
    tier.write_atomic("i/s/small.raw", [small])
    tier.write_atomic("i/s/big.raw", [big[i : i + MiB] for i in range(0, len(big), MiB)])
    assert tier.metadata("i/s/small.raw")[META_CHECKSUM] == xxhash.xxh3_128_hexdigest(small)
    assert tier.metadata("i/s/big.raw")[META_CHECKSUM] == xxhash.xxh3_128_hexdigest(big)
    head = s3_server.client().head_object(Bucket=bucket, Key="central/i/s/big.raw")  # type: ignore[attr-defined]
    assert "-" in head["ETag"], "the big object should have gone through a multipart upload"
    assert _uploads(s3_server, bucket) == []
    assert tier.find() == ["i/s/big.raw", "i/s/small.raw"]


def test_s3_never_overwrites_an_object_acqd_did_not_write(s3: tuple[S3Tier, str], s3_server: SeaweedS3) -> None:
    tier, bucket = s3
    c = s3_server.client()
    c.put_object(Bucket=bucket, Key="central/i/s/f.raw", Body=b"someone else's data")  # type: ignore[attr-defined]
    c.put_object(Bucket=bucket, Key="central/i/s/g.raw", Body=b"x" * 10)  # type: ignore[attr-defined]
    with pytest.raises(NameTakenError, match="not by acqd"):
        tier.write_atomic("i/s/f.raw", [b"acqd's data"])
    with pytest.raises(NameTakenError, match="not by acqd"):  # the multipart path too
        tier.write_atomic("i/s/g.raw", [os.urandom(MiB) for _ in range(6)])
    body = c.get_object(Bucket=bucket, Key="central/i/s/f.raw")["Body"].read()  # type: ignore[attr-defined]
    assert body == b"someone else's data"
    assert sorted(tier.find()) == ["i/s/f.raw", "i/s/g.raw"], "no temporaries left behind"
    assert _uploads(s3_server, bucket) == []


def test_s3_rewrite_of_the_same_bytes_is_idempotent(s3: tuple[S3Tier, str]) -> None:
    tier, _ = s3
    data = os.urandom(7 * MiB)
    tier.write_atomic("i/f", [data])
    tier.write_atomic("i/f", [data])  # a crash after the upload, before the journal: same bytes again
    with tier.open_read("i/f") as f:
        assert f.read() == data


def test_s3_failed_multipart_upload_is_aborted(s3: tuple[S3Tier, str], s3_server: SeaweedS3) -> None:
    tier, bucket = s3

    def chunks() -> Iterator[bytes]:
        for _ in range(12):
            yield os.urandom(MiB)
        assert _uploads(s3_server, bucket), "a multipart upload should be in progress by now"
        raise OSError(5, "source read error")

    with pytest.raises(OSError, match="source read error"):
        tier.write_atomic("i/s/f.raw", chunks())
    assert _uploads(s3_server, bucket) == []
    assert tier.find() == []


def test_s3_start_aborts_orphaned_uploads_below_its_namespace_only(
    s3: tuple[S3Tier, str], s3_server: SeaweedS3
) -> None:
    tier, bucket = s3
    c = s3_server.client()
    mine = c.create_multipart_upload(Bucket=bucket, Key="central/inst1/s/.~acqd-tmp.f.raw")  # type: ignore[attr-defined]
    c.upload_part(Bucket=bucket, Key=mine["Key"], UploadId=mine["UploadId"], PartNumber=1, Body=b"x" * 100)  # type: ignore[attr-defined]
    c.create_multipart_upload(Bucket=bucket, Key="central/inst2/s/.~acqd-tmp.g.raw")  # type: ignore[attr-defined]
    c.put_object(Bucket=bucket, Key="central/inst1/s/.~acqd-tmp.h.raw", Body=b"stale")  # type: ignore[attr-defined]
    assert tier.abort_incomplete("inst1") == 1
    assert _uploads(s3_server, bucket) == ["central/inst2/s/.~acqd-tmp.g.raw"]
    assert tier.find("inst1") == []


def test_s3_bad_credentials_are_a_destination_error(s3_server: SeaweedS3, tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.write_text("[default]\naws_access_key_id = acqdtestkey\naws_secret_access_key = wrong\n")
    bucket = s3_server.bucket(f"acqd-{uuid.uuid4().hex[:12]}")
    t = open_tier("central", f"s3://{bucket}/c", {"endpoint_url": s3_server.endpoint, "credentials_file": str(creds)})
    with pytest.raises(DestinationError, match="credentials"):
        t.write_atomic("f", [b"x"])
    # a HEAD's 403 carries no error code (a claim's or a copy's stat, the first request a running
    # daemon makes after its credentials go bad): said "forbidden" alone (an adversarial review)
    with pytest.raises(DestinationError, match="credentials refused"):
        t.size("f")


def test_s3_credentials_file_is_read_again_at_a_reload(s3_server: SeaweedS3, tmp_path: Path) -> None:
    """Found by a stranger's review (thirty-third session): the credentials file was read once, at the
    start: fixed (or refreshed by a token tool) and the daemon reloaded, every request still failed with
    the old keys until a restart, nothing said. A reload reads it again (the daemon calls this for each
    tier): new keys are used from the next request; a file broken since keeps the keys in use, said."""
    creds = tmp_path / "creds"
    creds.write_text("[default]\naws_access_key_id = acqdtestkey\naws_secret_access_key = wrong\n")
    bucket = s3_server.bucket(f"acqd-{uuid.uuid4().hex[:12]}")
    t = open_tier("central", f"s3://{bucket}/c", {"endpoint_url": s3_server.endpoint, "credentials_file": str(creds)})
    with pytest.raises(DestinationError, match="credentials"):
        t.write_atomic("f", [b"x"])
    assert t.reread_secrets() is None  # unchanged: nothing to say
    creds.write_text(s3_server.credentials.read_text())  # fixed
    said = t.reread_secrets()
    assert said is not None and "read again: its new keys are in use" in said, said
    t.write_atomic("f", [b"x"])
    creds.write_text("not an ini file")
    said = t.reread_secrets()
    assert said is not None and "stay in use" in said, said
    assert t.size("f") == 1  # the keys that work are still used
    t.close()


def test_s3_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match=r"secrets never go in acqd\.yaml"):
        open_tier("c", "s3://b/p", {"secret": "x"})
    with pytest.raises(PermanentError, match="unknown option 'bogus'"):
        open_tier("c", "s3://b/p", {"bogus": 1})
    with pytest.raises(PermanentError, match="cannot read"):
        open_tier("c", "s3://b/p", {"credentials_file": str(tmp_path / "missing")})
    (tmp_path / "c").write_text("[other]\naws_access_key_id = k\n")
    with pytest.raises(PermanentError, match=r"no \[default\] section"):
        open_tier("c", "s3://b/p", {"credentials_file": str(tmp_path / "c")})
    with pytest.raises(ValueError, match=r"secrets never go in acqd\.yaml"):
        Config.model_validate(
            {
                "instrument": "k3",
                "state_dir": str(tmp_path),
                "watch": [{"path": str(tmp_path), "detector": "generic"}],
                "tiers": {"central": {"url": "sftp://h/p", "options": {"password": "hunter2"}}},
            }
        )


@pytest.mark.parametrize(
    ("s3fs", "said"),
    [
        ({"anno": True}, "unknown s3fs argument 'anno'"),
        ({"client_kwargs": {"regin_name": "x"}}, "unknown botocore client argument 'regin_name'"),
        ({"config_kwargs": {"retrys": 1}}, "unknown botocore Config option 'retrys'"),
        ({"config_kwargs": {"retries": {"mode": "fast"}}}, "config_kwargs: Invalid value"),
        ({"config_kwargs": 3}, "config_kwargs: a mapping"),
        ({"secret": "x"}, r"s3fs\.secret: secrets never go in acqd\.yaml"),
        ({"password": "x"}, r"s3fs\.password: secrets never go in acqd\.yaml"),
        ({"client_kwargs": {"aws_secret_access_key": "x"}}, r"aws_secret_access_key: secrets never go"),
        ({"loop": None}, "set by acqd itself"),
        (["anon"], "a mapping of s3fs"),
    ],
)
def test_s3fs_passthrough_is_checked_before_anything_connects(s3fs: object, said: str) -> None:
    """s3fs takes unknown arguments silently and botocore refuses a bad one only at the first request,
    where it looked like a failing server, retried for ever: every one is a configuration error."""
    with pytest.raises(PermanentError, match=said):
        open_tier("c", "s3://b/p", {"endpoint_url": "http://127.0.0.1:9", "s3fs": s3fs})


def test_good_s3fs_passthrough_reaches_s3fs() -> None:
    t = open_tier(
        "c",
        "s3://b/p",
        {
            "endpoint_url": "http://127.0.0.1:9",
            "s3fs": {
                "anon": True,
                "client_kwargs": {"region_name": "x"},
                "config_kwargs": {"retries": {"max_attempts": 1}},
            },
        },
    )
    fs = t.fs  # type: ignore[attr-defined]
    assert (
        fs.anon is True
        and fs.client_kwargs["region_name"] == "x"
        and fs.config_kwargs["retries"] == {"max_attempts": 1}
    )


def test_sftp_host_keys_are_checked(sshd_server: Sshd, tmp_path: Path) -> None:
    wrong = tmp_path / "known_hosts"
    os.system(f"ssh-keygen -q -t ed25519 -N '' -f {tmp_path / 'other'}")
    pub = (tmp_path / "other.pub").read_text().split()
    wrong.write_text(f"[127.0.0.1]:{sshd_server.port} {pub[0]} {pub[1]}\n")
    t = open_tier("c", sshd_server.url(tmp_path / "d"), sshd_server.options(known_hosts=str(wrong)))
    # a key known_hosts has for the host, not the one it offers: never "add it" (a stranger's review)
    with pytest.raises(DestinationError, match=r"host key not trusted: .*or differs from the one there") as e:
        t.write_atomic("f", [b"x"])
    assert "add it to known_hosts" not in str(e.value)
    with pytest.raises(PermanentError, match="host keys are always checked"):
        open_tier("c", sshd_server.url(tmp_path / "d"), sshd_server.options(known_hosts=str(tmp_path / "none")))
    with pytest.raises(PermanentError, match=r"secrets never go in acqd\.yaml"):
        open_tier("c", sshd_server.url(tmp_path / "d"), {"password": "x"})


def test_sftp_wrong_key_is_a_destination_error(sshd_server: Sshd, tmp_path: Path) -> None:
    os.system(f"ssh-keygen -q -t ed25519 -N '' -f {tmp_path / 'stranger'}")
    t = open_tier("c", sshd_server.url(tmp_path / "d"), sshd_server.options(key_file=str(tmp_path / "stranger")))
    with pytest.raises(DestinationError, match="authentication failed"):
        t.write_atomic("f", [b"x"])


def test_sftp_reconnects_after_the_server_comes_back(sshd_server: Sshd, tmp_path: Path) -> None:
    t = open_tier("c", sshd_server.url(tmp_path / "d"), sshd_server.options(connect_timeout=3))
    assert isinstance(t, SftpTier)
    t.write_atomic("a", [b"1"])
    sshd_server.stop()
    try:
        with pytest.raises(TransientError):
            t.write_atomic("b", [b"2"])
        with pytest.raises(TransientError):  # still down: connecting again fails the same way
            t.write_atomic("b", [b"2"])
    finally:
        sshd_server.start()
    t.write_atomic("b", [b"2"])
    assert t.find() == ["a", "b"]
    assert not any(p.name.startswith(".~acqd-tmp") for p in (tmp_path / "d").iterdir())


def test_error_table_maps_each_backend() -> None:
    from botocore.exceptions import ClientError

    def client_error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")

    import asyncssh

    cases: list[tuple[BaseException, type, str]] = [
        (client_error("AccessDenied", 403), DestinationError, "access denied"),
        (client_error("SlowDown", 503), TransientError, "slow down"),
        (client_error("WeirdNew", 500), TransientError, "WeirdNew"),
        (client_error("PreconditionFailed", 412), ConflictError, "already there"),
        (asyncssh.SFTPPermissionDenied("no"), DestinationError, "permission denied"),
        (asyncssh.SFTPFailure("no space"), TransientError, "failure"),
        (asyncssh.HostKeyNotVerifiable("bad"), DestinationError, "host key"),
        (asyncssh.ConnectionLost("gone"), TransientError, "connection lost"),
    ]
    for exc, cls, text in cases:
        wrapped = OSError(22, "wrapped")
        wrapped.__cause__ = exc  # s3fs and sshfs re-raise as OSError with the original as the cause
        for e in (exc, wrapped):
            got = translate("central", "write", "a/f", e)
            assert isinstance(got, cls), (exc, got)
            if not isinstance(e, OSError) or e is exc:
                assert text.lower() in str(got).lower(), (exc, got)


def test_s3_read_back_is_checked_against_the_metadata(s3: tuple[S3Tier, str], s3_server: SeaweedS3) -> None:
    from acqd.errors import VerifyError

    tier, bucket = s3
    data = os.urandom(100_000)
    tier.write_atomic("i/f", [data])
    with tier.open_read("i/f") as f:
        assert f.read() == data
    meta = tier.metadata("i/f")
    rotten = data[:-1] + bytes([data[-1] ^ 1])  # same metadata, one bit flipped (bit rot, a bad copy)
    s3_server.client().put_object(Bucket=bucket, Key="central/i/f", Body=rotten, Metadata=meta)  # type: ignore[attr-defined]
    with tier.open_read("i/f") as f, pytest.raises(VerifyError, match="acqd checksum metadata"):
        while f.read(30_000):
            pass


def _folders(s3_server: SeaweedS3, bucket: str, prefix: str) -> list[str]:
    """What a listing shows directly below `prefix` (keys and folders), as any S3 client sees it."""
    page = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=prefix, Delimiter="/")  # type: ignore[attr-defined]
    return sorted([o["Key"] for o in page.get("Contents", [])] + [p["Prefix"] for p in page.get("CommonPrefixes", [])])


def test_s3_folder_placeholders_are_not_data(s3: tuple[S3Tier, str], s3_server: SeaweedS3) -> None:
    """A prefix holding only folders is empty: the empty folder SeaweedFS keeps once its last object
    is deleted (listed as a "directory"), and a zero-byte "folder/" marker key (a console's "create
    folder"). `has_objects` counted them as data, so `acqd run` refused the instrument's prefix as
    another journal's (exit 78) after an `acqd check` had left such a folder."""
    tier, bucket = s3
    c = s3_server.client()
    c.put_object(Bucket=bucket, Key="central/inst1/s/f", Body=b"x")  # type: ignore[attr-defined]
    c.delete_object(Bucket=bucket, Key="central/inst1/s/f")  # type: ignore[attr-defined]
    c.put_object(Bucket=bucket, Key="central/inst2/", Body=b"")  # type: ignore[attr-defined]
    c.put_object(Bucket=bucket, Key="central/inst2/s/", Body=b"")  # type: ignore[attr-defined]
    assert _folders(s3_server, bucket, "central/") == ["central/inst1/", "central/inst2/"]  # the server keeps both
    for inst in ("inst1", "inst2"):
        assert not tier.has_objects(inst), inst
        assert tier.find(inst) == [], inst
    c.put_object(Bucket=bucket, Key="central/inst2/s/f", Body=b"")  # type: ignore[attr-defined]
    assert tier.has_objects("inst2")  # a zero-byte object is data
    assert tier.find("inst2") == ["inst2/s/f"]


def test_s3_check_probe_leaves_nothing_behind(s3: tuple[S3Tier, str], s3_server: SeaweedS3) -> None:
    """`acqd check`'s write probe removes the folders its object made (SeaweedFS keeps them), and
    never a folder that holds something or an operator's own folder marker."""
    tier, bucket = s3
    tier.probe("inst")
    assert _folders(s3_server, bucket, "") == []
    assert not tier.has_objects("inst")
    c = s3_server.client()
    c.put_object(Bucket=bucket, Key="central/other/f", Body=b"keep")  # type: ignore[attr-defined]
    c.put_object(Bucket=bucket, Key="central/mine/", Body=b"")  # type: ignore[attr-defined]
    tier.probe("inst")
    tier.probe("mine")
    assert _folders(s3_server, bucket, "central/") == ["central/mine/", "central/other/"]
    assert [o["Key"] for o in c.list_objects_v2(Bucket=bucket)["Contents"]] == ["central/mine/", "central/other/f"]  # type: ignore[attr-defined]


def test_s3_run_after_check_on_a_fresh_prefix_starts(s3_server: SeaweedS3, tmp_path: Path) -> None:
    """The tester's run: `acqd check` (with its write probe) on a fresh bucket, then the first
    `acqd run`. It refused with exit 78, "already holds data of instrument ... that this journal does
    not know": the folder the probe left behind."""
    bucket = s3_server.bucket(f"acqd-{uuid.uuid4().hex[:12]}")
    watch, state = tmp_path / "acq", tmp_path / "state"
    watch.mkdir()
    (watch / "f.raw").write_bytes(os.urandom(1000))
    opts = ", ".join(f"{k}: {v}" for k, v in s3_server.options().items())
    cfg = write_config(
        tmp_path / "acqd.yaml",
        f"""
instrument: scope
state_dir: {state}
watch:
  - {{path: {watch}, settle: 0.2s}}
tiers:
  central: {{url: "s3://{bucket}/facility", options: {{{opts}}}}}
""",
    )
    r = run_acqd("check", "--config", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_acqd("run", "--config", str(cfg), "--once")
    assert r.returncode == 0, r.stderr
    assert journal_states(state) == {"f.raw": "verified"}
