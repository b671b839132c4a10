"""The owner page over a real journal (built by the real daemon), with its real app and data layer:
signed links, forms, CSRF, holds the sweeps and the CLI see, audit, refusals, the facility view."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from acqd import journal as jr
from acqd.daemon import build_mailer, load_retention
from acqd.journal import Journal, journal_path
from acqd.owners import links, serve, view
from acqd.owners.access import session_id
from acqd.policy.model import DAY, load_policy
from acqd.policy.planner import Item, Warning_, plan
from tests.conftest import Background, run_acqd, wait_for
from tests.owner_fixtures import LINK, Owners, digest_links, owners_setup, sweep
from tests.servers import free_port
from tests.test_retention import POLICY

SECRET = b"k" * 40


# --- links: pure -------------------------------------------------------------------------------


def test_a_link_names_its_owner_until_it_expires() -> None:
    token, link = links.make_token(SECRET, "alice", 1000.0)
    assert links.read_token(SECRET, token, 999.0) == link
    with pytest.raises(links.LinkError) as e:
        links.read_token(SECRET, token, 1000.0)
    assert e.value.status == 410 and e.value.link == link


@pytest.mark.parametrize("where", range(0, 120, 7))
def test_a_tampered_link_is_refused(where: int) -> None:
    token, _ = links.make_token(SECRET, "alice", 2e9)
    i = where % len(token)
    if token[i] == ".":
        i += 1
    bad = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
    with pytest.raises(links.LinkError) as e:
        links.read_token(SECRET, bad, 0.0)
    assert e.value.status == 403


def test_another_owner_or_secret_or_expiry_does_not_verify() -> None:
    token, _ = links.make_token(SECRET, "alice", 2e9)
    head, _, sig = token.partition(".")
    forged = base64.urlsafe_b64encode(json.dumps(["bob", 2e9, "x"]).encode()).rstrip(b"=").decode()
    for bad in (f"{forged}.{sig}", token.replace(head, head[:-2]), "nonsense", "", "a.b.c"):
        with pytest.raises(links.LinkError):
            links.read_token(SECRET, bad, 0.0)
    with pytest.raises(links.LinkError):
        links.read_token(b"z" * 40, token, 0.0)
    _, other = links.make_token(SECRET, "alice", 2e9)
    _, mine = links.make_token(SECRET, "alice", 2e9)
    assert links.csrf_ok(SECRET, mine, links.csrf_token(SECRET, mine))
    assert not links.csrf_ok(SECRET, mine, links.csrf_token(SECRET, other))  # per link
    assert not links.csrf_ok(SECRET, mine, None) and not links.csrf_ok(SECRET, mine, "")
    with pytest.raises(ValueError, match="at least 32"):
        links.check_secret(b"short\n", "x")


# --- the page's dates agree with the planner -----------------------------------------------------


@pytest.mark.parametrize("warned_day", [None, 46, 50, 70])
def test_the_page_shows_the_day_the_planner_purges(tmp_path: Path, warned_day: int | None) -> None:
    (tmp_path / "p.yaml").write_text(POLICY)
    policy = load_policy(tmp_path / "p.yaml")
    it = Item(7, "alice_x/FoilHole_1_fractions.mrc", "alice_x", "generic", "capacity", 10, 1000.0, root="/acq")
    rule = policy.rule_for(it.relpath, it.detector, "alice")
    ws = [] if warned_day is None else [Warning_(7, 1000.0 + max(60, warned_day + 14) * DAY, 1000.0 + warned_day * DAY)]
    now = 1000.0 + (warned_day or 0) * DAY
    at, warned = view.purge_date(it, rule, ws, now)
    assert at is not None and warned == bool(ws)
    if ws:  # the planner purges at that moment and not a minute before
        assert any(a.kind == "purge" for a in plan(at, [it], policy, (), ws))
        assert not any(a.kind == "purge" for a in plan(at - 60, [it], policy, (), ws))
    else:
        assert at == 1000.0 + 60 * DAY
        assert any(a.kind == "warn" and a.at == at for a in plan(at - 14 * DAY, [it], policy, (), ws))


# --- the app over a real journal -----------------------------------------------------------------


class Page:
    def __init__(self, o: Owners, client: httpx.AsyncClient, j: Journal, clock: list[float]) -> None:
        self.o, self.http, self.j, self.clock = o, client, j, clock

    def link(self, owner: str = "alice", expires: float | None = None) -> str:
        token, _ = links.make_token(self.o.secret, owner, expires or time.time() + 30 * DAY)
        return f"/o/{token}"

    def csrf(self, path: str) -> str:
        token = path.rsplit("/", 1)[1]
        return links.csrf_token(self.o.secret, links.read_token(self.o.secret, token, 0))

    def audit(self, prefix: str) -> list[dict[str, object]]:
        r = Journal(journal_path(self.o.cfg.state_dir), readonly=True)
        try:
            return [d for _, _, d in jr.audit_actions(r, prefix)]
        finally:
            r.close()


@pytest.fixture
async def owners(tmp_path: Path) -> AsyncIterator[Owners]:
    async for o in owners_setup(tmp_path, free_port()):
        yield o


@pytest.fixture
async def page(owners: Owners) -> AsyncIterator[Page]:
    async for p in page_over(owners):
        yield p


async def page_over(o: Owners) -> AsyncIterator[Page]:
    """The real app over the journal `o`'s daemon built, with the policy its configuration names."""
    policy = load_retention(o.cfg)
    assert policy is not None
    jexec = ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()
    j = await loop.run_in_executor(jexec, Journal, journal_path(o.cfg.state_dir))
    clock = [time.time()]
    app = serve.build(
        o.cfg, journal=j, jexec=jexec, policy=lambda: policy, mailer=build_mailer(o.cfg), clock=lambda: clock[0]
    )
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://owners.test") as client:
        yield Page(o, client, j, clock)
    await loop.run_in_executor(jexec, j.close)
    jexec.shutdown()


def sid(o: Owners, session: str) -> str:
    return session_id(str(o.s.watch), session)


def day_after(days: float) -> str:
    return datetime.fromtimestamp(time.time() + days * DAY, UTC).strftime("%Y-%m-%d")


async def test_the_page_lists_the_owners_data_only_with_headers(page: Page) -> None:
    r = await page.http.get(page.link("alice"))
    assert r.status_code == 200, r.text
    assert "alice_apoferritin_0101" in r.text and "alice_spliceosome_0104" in r.text
    assert "bob_ribosome_0102" not in r.text
    assert "rule movies" in r.text and "moves to capacity" in r.text and "movie" in r.text
    # the moment of a purge, in UTC, as the digest says it (a UTC day alone is the day before west of
    # Greenwich for a purge early in the day: a stranger's review)
    assert re.search(r"<strong>deleted \d{4}-\d\d-\d\d \d\d:\d\d UTC</strong>", r.text), r.text
    assert re.search(r"\(deleted \d{4}-\d\d-\d\d \d\d:\d\d UTC\)</option>", r.text), r.text
    h = r.headers
    assert "frame-ancestors 'none'" in h["content-security-policy"] and "script-src" not in h["content-security-policy"]
    assert h["x-frame-options"] == "DENY" and h["referrer-policy"] == "no-referrer"
    assert h["x-content-type-options"] == "nosniff" and h["cache-control"] == "no-store"
    assert r.text.count('name="csrf"') == 2  # both forms (no hold yet to release)
    for field in ("keep-session", "keep-until", "keep-reason", "ext-session", "ext-until", "ext-reason"):
        assert f'<label for="{field}"' in r.text and f'id="{field}"' in r.text
    nf = await page.http.get("/nothing")
    assert nf.status_code == 404 and nf.headers["x-frame-options"] == "DENY"  # the framework's own pages too


async def test_a_hold_from_the_page_is_audited_listed_and_planned(page: Page, tmp_path: Path) -> None:
    o, path = page.o, page.link("alice")
    until = day_after(100)
    r = await page.http.post(
        f"{path}/hold",
        data={"csrf": page.csrf(path), "session": sid(o, "alice_apoferritin_0101"), "until": until, "reason": "paper"},
    )
    assert r.status_code == 303, r.text
    r = await page.http.get(r.headers["location"].replace("../", "/o/"))
    assert "Kept: alice_apoferritin_0101 is on hold until" in r.text and "Release" in r.text
    [(hid, target, u, reason, root, _, by)] = jr.hold_records(page.j, time.time())
    assert (target, reason, root, by) == ("alice_apoferritin_0101", "paper", str(o.s.watch), "owner:alice")
    # kept until the chosen day has ended in every time zone: 12:00 UTC the next day
    assert datetime.fromtimestamp(u - 12 * 3600 - 1, UTC).strftime("%Y-%m-%d") == until
    [entry] = page.audit("hold")
    token = path.rsplit("/", 1)[1]
    assert entry["owner"] == "alice" and entry["link"] == links.read_token(o.secret, token, 0).link_id
    listed = run_acqd("hold", "--list", "--config", str(o.cfg_path))
    assert "alice_apoferritin_0101" in listed.stdout and "paper" in listed.stdout, listed.stderr
    iso = datetime.fromtimestamp(o.s.t0 + 61 * DAY, UTC).isoformat()
    planned = run_acqd("plan", "--config", str(o.cfg_path), "--now", iso, "--json")
    acts = {(a["action"], a["path"]): a["reason"] for a in json.loads(planned.stdout)["actions"]}
    assert "paper" in acts[("blocked", "alice_apoferritin_0101/FoilHole_1_fractions.mrc")]
    assert ("warn", "alice_spliceosome_0104/FoilHole_8_fractions.mrc") in acts
    # released from the page: the session follows the policy again
    r = await page.http.post(f"{path}/release", data={"csrf": page.csrf(path), "hold": str(hid)})
    assert r.status_code == 303 and jr.hold_records(page.j, time.time()) == []
    assert page.audit("hold.released")[0]["owner"] == "alice"


async def test_refusals_are_clear_and_audited(page: Page) -> None:
    o, path = page.o, page.link("alice")
    bob = sid(o, "bob_ribosome_0102")
    good = {"csrf": page.csrf(path), "until": day_after(30), "reason": "x"}
    r = await page.http.post(f"{path}/hold", data={**good, "session": bob})  # another owner's session
    assert r.status_code == 404 and "no session of yours" in r.text and "bob_ribosome" not in r.text
    r = await page.http.post(f"{path}/hold", data={**good, "session": sid(o, "alice_apoferritin_0101"), "csrf": ""})
    assert r.status_code == 403 and "security token" in r.text
    r = await page.http.post(
        f"{path}/hold", data={**good, "session": sid(o, "alice_apoferritin_0101"), "csrf": page.csrf(page.link())}
    )
    assert r.status_code == 403  # another link's token
    r = await page.http.post(
        f"{path}/hold", data={**good, "session": sid(o, "alice_apoferritin_0101"), "until": day_after(400)}
    )
    assert r.status_code == 400 and "at most" in r.text and "extension" in r.text
    r = await page.http.post(f"{path}/hold", data={**good, "session": sid(o, "alice_apoferritin_0101"), "reason": " "})
    assert r.status_code == 400 and "reason" in r.text
    assert jr.hold_records(page.j, time.time()) == []  # nothing was held
    r = await page.http.get(page.link("alice", expires=time.time() - 1))
    assert r.status_code == 410 and "expired" in r.text
    r = await page.http.get(path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB"))
    assert r.status_code == 403 and "damaged" in r.text
    refused = page.audit("owner-page.refused")
    reasons = [str(d["reason"]) for d in refused]
    assert sum("no session of yours" in x for x in reasons) == 1
    assert sum("CSRF" in x for x in reasons) == 2
    assert any("expired" in x for x in reasons) and any("damaged" in x for x in reasons)
    assert all(d["client"] == "203.0.113.9" for d in refused)
    r = await page.http.post(f"{path}/hold", data={**good, "reason": "x" * 20_000})
    assert r.status_code == 413 and jr.hold_records(page.j, time.time()) == []  # a form is small


async def test_a_facility_hold_is_not_the_owners_to_release(page: Page) -> None:
    o, path = page.o, page.link("alice")
    hid = jr.add_hold(
        page.j, "alice_spliceosome_0104", time.time() + 9 * DAY, "facility audit", time.time(), root=str(o.s.watch)
    )
    r = await page.http.get(path)
    assert "placed by the facility" in r.text and 'name="hold"' not in r.text
    r = await page.http.post(f"{path}/release", data={"csrf": page.csrf(path), "hold": str(hid)})
    assert r.status_code == 403 and "placed by the facility" in r.text
    assert [h[0] for h in jr.hold_records(page.j, time.time())] == [hid]
    bobs = jr.add_hold(page.j, "bob_ribosome_0102", time.time() + 9 * DAY, "bob's", time.time(), placed_by="owner:bob")
    r = await page.http.post(f"{path}/release", data={"csrf": page.csrf(path), "hold": str(bobs)})
    assert r.status_code == 404 and len(jr.hold_records(page.j, time.time())) == 2


async def test_an_extension_request_goes_to_the_facility(page: Page) -> None:
    o, path = page.o, page.link("alice")
    form = {"csrf": page.csrf(path), "session": sid(o, "alice_apoferritin_0101")}
    r = await page.http.post(
        f"{path}/extend",
        data={**form, "until": day_after(400), "reason": "long-term study"},
    )
    assert r.status_code == 303 and "done=asked&" in r.headers["location"], r.text
    [(rcpt, msg)] = o.s.box.messages
    assert rcpt == ["facility@lab.example"] and "alice asks to keep alice_apoferritin_0101" in msg["Subject"]
    assert "long-term study" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    [req] = page.audit("owner-page.extension-request")
    assert req["owner"] == "alice" and req["mailed"] is True
    assert jr.hold_records(page.j, time.time()) == []  # a request holds nothing by itself
    r = await page.http.post(
        f"{path}/extend",
        data={**form, "until": day_after(20), "reason": "x"},
    )
    assert r.status_code == 400 and "yourself" in r.text


async def test_an_expired_link_asks_for_a_fresh_one_by_mail(page: Page) -> None:
    """The expired-link page's button mails a fresh link to the address the owner's warnings go to
    (caught by aiosmtpd; it opens the owner's page); asked again within the limit, nothing is sent;
    the answer is the same for every owner and whether or not a mail went out; the form needs its
    token and a link this facility signed."""
    import re

    o = page.o
    old = page.link("alice", expires=time.time() - 1)
    r = await page.http.get(old)
    assert r.status_code == 410 and "Send me a fresh link" in r.text
    m = re.search(r'action="([^"]+)".*?name="csrf" value="([^"]+)"', r.text, re.S)
    assert m is not None and m.group(1).endswith(f"{old[3:]}/fresh-link")
    csrf = m.group(2)
    r = await page.http.post(f"{old}/fresh-link", data={"csrf": ""})
    assert r.status_code == 403 and o.s.box.messages == []
    r = await page.http.post(f"{old}/fresh-link", data={"csrf": csrf})
    assert r.status_code == 200 and "on its way" in r.text
    answer = r.text
    [(rcpt, msg)] = o.s.box.messages
    assert rcpt == ["alice@lab.example"] and "fresh link" in msg["Subject"]
    [url] = LINK.findall(msg.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    fresh = links.read_token(o.secret, url.rsplit("/", 1)[1], time.time())
    assert fresh.owner == "alice" and fresh.expires > time.time() + DAY
    r = await page.http.get(url.split(f":{o.port}", 1)[1])
    assert r.status_code == 200 and "alice_apoferritin_0101" in r.text
    r = await page.http.post(f"{old}/fresh-link", data={"csrf": csrf})  # again at once: the same answer, no mail
    assert r.status_code == 200 and r.text == answer and len(o.s.box.messages) == 1
    nobody = page.link("zed", expires=time.time() - 1)  # an owner with no address: the same answer
    r = await page.http.post(f"{nobody}/fresh-link", data={"csrf": page.csrf(nobody)})
    assert r.status_code == 200 and r.text == answer
    r = await page.http.post(f"{old[:-3]}AAA/fresh-link", data={"csrf": csrf})  # not signed here
    assert r.status_code == 403 and "damaged" in r.text
    sent = [d for d in page.audit("owner-page.fresh-link") if "mailed" in d]  # not the .limited ones
    assert [(d["owner"], d["mailed"], d["fresh"]) for d in sent if d["owner"] == "alice"] == [
        ("alice", True, fresh.link_id)
    ]
    assert [d["owner"] for d in page.audit("owner-page.fresh-link.limited")] == ["alice"]


async def test_link_checks_are_rate_limited(page: Page) -> None:
    for _ in range(10):
        assert (await page.http.get("/o/bad.token")).status_code == 403
    r = await page.http.get(page.link("alice"))
    assert r.status_code == 429 and "Too many link checks" in r.text  # even a good link, from that address, for a while
    page_refusals = [d for d in page.audit("owner-page.refused")]
    assert len(page_refusals) == 10


async def test_the_facility_view_needs_its_own_credential(page: Page) -> None:
    o = page.o
    r = await page.http.get("/facility")
    assert r.status_code == 401 and "Basic" in r.headers["www-authenticate"]
    r = await page.http.get("/facility", auth=("facility", o.secret.decode()))  # the links' secret is not it
    assert r.status_code == 401
    jr.add_hold(page.j, "bob_ribosome_0102", time.time() + 9 * DAY, "paper revision", time.time(), root=str(o.s.watch))
    r = await page.http.get("/facility", auth=("facility", o.token.decode()))
    assert r.status_code == 200, r.text
    for text in ("Upcoming deletions by week and owner", "paper revision", "Usage per owner and tier", "Quarantined"):
        assert text in r.text
    assert "alice" in r.text and "bob" in r.text and "central" in r.text
    r = await page.http.get("/facility", headers={"authorization": f"Bearer {o.token.decode()}"})
    assert r.status_code == 200
    assert any("facility view" in str(d["reason"]) for d in page.audit("owner-page.refused"))


async def test_the_digest_carries_a_link_that_opens_the_owners_page(page: Page) -> None:
    o = page.o
    await sweep(o, [0, 14, 46])
    text, html = digest_links(o, "alice@lab.example")
    assert text == html and text.startswith(f"http://127.0.0.1:{o.port}/o/")
    r = await page.http.get(text.split(f":{o.port}", 1)[1])
    assert r.status_code == 200 and "alice_spliceosome_0104" in r.text and "the warning was sent" in r.text
    [issued] = [d for d in page.audit("owner-page.link") if d["owner"] == "alice"]
    token = text.rsplit("/", 1)[1]
    assert issued["link"] == links.read_token(o.secret, token, 0).link_id and issued["recipient"] == "alice@lab.example"
    b_text, _ = digest_links(o, "bob@lab.example")
    assert links.read_token(o.secret, b_text.rsplit("/", 1)[1], 0).owner == "bob"


# --- served by `acqd run` ------------------------------------------------------------------------


@pytest.fixture
def daemon_page(owners: Owners) -> Iterator[tuple[Owners, Background]]:
    d = Background("run", "--config", str(owners.cfg_path))
    yield owners, d
    d.terminate()


def test_acqd_run_serves_the_page_on_loopback(daemon_page: tuple[Owners, Background]) -> None:
    o, d = daemon_page
    base = f"http://127.0.0.1:{o.port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, timeout=60, what="the owner page of `acqd run`", daemon=d)
    token, _ = links.make_token(o.secret, "alice", time.time() + DAY)
    r = httpx.get(f"{base}/o/{token}", timeout=10)
    assert r.status_code == 200 and "alice_apoferritin_0101" in r.text
    code, err = d.terminate()
    assert code == 0, err


def test_check_refuses_a_missing_or_short_secret_and_a_page_without_policy(owners: Owners, tmp_path: Path) -> None:
    o = owners
    r = run_acqd("check", "--config", str(o.cfg_path), "--no-probe")
    assert r.returncode == 0, r.stdout + r.stderr
    (tmp_path / "owner-secret").write_text("short\n")
    r = run_acqd("check", "--config", str(o.cfg_path), "--no-probe")
    assert r.returncode == 78 and "owner_page.secret_file" in r.stderr and "at least 32" in r.stderr, r.stderr
    (tmp_path / "owner-secret").unlink()
    r = run_acqd("owner-page", "--config", str(o.cfg_path))
    assert r.returncode == 78 and "owner_page.secret_file: cannot read" in r.stderr, r.stderr
    no_policy = tmp_path / "no-policy.yaml"
    no_policy.write_text(o.cfg.model_copy(update={"policy": None}).model_dump_json())
    r = run_acqd("check", "--config", str(no_policy), "--no-probe")
    assert r.returncode == 78 and "no `policy:`" in r.stderr, r.stderr


async def test_a_hold_from_the_page_does_not_wait_for_a_tier_that_does_not_answer(
    owners: Owners, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page writes the hold's records on the tiers after the hold (acqd.holdledger). A tier whose
    server accepts and never answers (a hung S3 gateway) held the owner's answer for minutes; the
    hold is in the journal, so the page answers at once and the records follow in the background."""
    import socket
    import uuid

    from acqd import holdledger
    from acqd.storage import open_tier

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    hung = open_tier(
        "hung", f"s3://b{uuid.uuid4().hex[:8]}/x", {"endpoint_url": f"http://127.0.0.1:{silent.getsockname()[1]}"}
    )
    io = ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()

    async def records() -> None:
        await loop.run_in_executor(io, holdledger.read_tier, hung, "krios")

    policy = load_retention(owners.cfg)
    jexec = ThreadPoolExecutor(1)
    j = await loop.run_in_executor(jexec, Journal, journal_path(owners.cfg.state_dir))
    app = serve.build(
        owners.cfg,
        journal=j,
        jexec=jexec,
        policy=lambda: policy,
        mailer=build_mailer(owners.cfg),
        on_holds_changed=records,
    )
    token, _ = links.make_token(owners.secret, "alice", time.time() + 30 * DAY)
    path = f"/o/{token}"
    csrf = links.csrf_token(owners.secret, links.read_token(owners.secret, token, 0))
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://owners.test") as client:
            data = {
                "csrf": csrf,
                "session": sid(owners, "alice_apoferritin_0101"),
                "until": day_after(100),
                "reason": "paper",
            }
            r = await asyncio.wait_for(client.post(f"{path}/hold", data=data), 60)
        assert r.status_code == 303, r.text
        assert [t for _, t, *_ in jr.hold_records(j, time.time())] == ["alice_apoferritin_0101"]
    finally:
        silent.close()  # the hung read ends
        io.shutdown(wait=False, cancel_futures=True)
        await loop.run_in_executor(jexec, j.close)
        jexec.shutdown()
        hung.close()
