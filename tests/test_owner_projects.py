"""The owner page keeps a whole project, and holds up against a stranger: another owner's data through
ids, shared projects and shared session folders, HTML in folder names, odd dates and time zones, big
bodies. The real app over a journal built by the real daemon, as in test_owner_page."""

from __future__ import annotations

import base64
import json
import shlex
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from acqd import journal as jr
from acqd.owners import links
from acqd.owners.access import project_id
from acqd.policy.model import DAY, load_policy
from acqd.policy.planner import Hold, Item
from tests.conftest import run_acqd
from tests.owner_fixtures import Owners, owners_setup, sweep
from tests.servers import free_port
from tests.test_owner_page import Page, day_after, page_over, sid
from tests.test_retention import POLICY

# session folders <user>_<project>_<date>, as the cryo-EM example policy names them; and one folder
# (`shared_0110`) whose files name their owners, as some facilities' file names do
FILES = [
    "alice_apoferritin_0101/FoilHole_1_fractions.mrc",
    "alice_apoferritin_0107/FoilHole_9_fractions.mrc",
    "alice_ribosome_0105/FoilHole_5_fractions.mrc",
    "alice_spliceosome_0104/FoilHole_8_fractions.mrc",
    "bob_ribosome_0102/FoilHole_3_fractions.mrc",
    "shared_0110/alice_6_fractions.mrc",
    "shared_0110/bob_7_fractions.mrc",
    'alice_<b onmouseover="x">&_0111/FoilHole_2_fractions.mrc',
    "alice_line\r\nBcc: eve@example.org_0112/FoilHole_4_fractions.mrc",
    "alice_x;touch pwned;$(id)_0113/FoilHole_5_fractions.mrc",
]
LINE_SESSION = "alice_line\r\nBcc: eve@example.org_0112"
SHELL_SESSION = "alice_x;touch pwned;$(id)_0113"
HTML_SESSION = 'alice_<b onmouseover="x">&_0111'
PROJECT_POLICY = POLICY.replace(
    '    pattern: "^(?P<owner>[a-z]+)_"\n',
    '    pattern: "(?P<owner>alice|bob)_"\n    project: "^[a-z]+_(?P<project>[a-z]+)_"\n',
)


@pytest.fixture
async def owners(tmp_path: Path) -> AsyncIterator[Owners]:
    async for o in owners_setup(tmp_path, free_port(), FILES):
        policy = o.cfg.policy
        assert policy is not None and "project:" not in policy.read_text()
        policy.write_text(PROJECT_POLICY)
        yield o


@pytest.fixture
async def page(owners: Owners) -> AsyncIterator[Page]:
    async for p in page_over(owners):
        yield p


def held(page: Page) -> dict[str, tuple[str, str, float]]:
    """target -> (reason, placed_by, until) of the holds in force."""
    return {t: (why, by, u) for _, t, u, why, _, _, by in jr.hold_records(page.j, time.time())}


async def test_a_whole_project_is_kept_and_seen_everywhere(page: Page) -> None:
    o, path = page.o, page.link("alice")
    r = await page.http.get(path)
    assert r.status_code == 200 and "Keep a whole project" in r.text
    assert '<label for="project"' in r.text and 'id="project"' in r.text
    assert "apoferritin (2 sessions: alice_apoferritin_0101, alice_apoferritin_0107)" in r.text
    assert "bob_ribosome" not in r.text  # alice's ribosome project is listed, bob's session in it is not
    form = {"csrf": page.csrf(path), "project": project_id("apoferritin"), "until": day_after(100), "reason": "paper"}
    r = await page.http.post(f"{path}/hold-project", data=form)
    assert r.status_code == 303, r.text
    r = await page.http.get(r.headers["location"].replace("../", "/o/"))
    assert "Kept: every session of project apoferritin is on hold." in r.text
    holds = held(page)
    assert set(holds) == {"alice_apoferritin_0101", "alice_apoferritin_0107"}
    assert {v[:2] for v in holds.values()} == {("project apoferritin: paper", "owner:alice")}
    entries = page.audit("hold")
    assert len(entries) == 2 and all(e["project"] == "apoferritin" and e["owner"] == "alice" for e in entries)
    assert r.text.count("Release the hold on alice_apoferritin") == 2  # released one by one
    listed = run_acqd("hold", "--list", "--config", str(o.cfg_path))
    assert listed.stdout.count("project apoferritin: paper") == 2, listed.stderr
    iso = datetime.fromtimestamp(o.s.t0 + 61 * DAY, UTC).isoformat()
    planned = run_acqd("plan", "--config", str(o.cfg_path), "--now", iso, "--json")
    acts = {(a["action"], a["path"]): a["reason"] for a in json.loads(planned.stdout)["actions"]}
    for f in ("alice_apoferritin_0101/FoilHole_1_fractions.mrc", "alice_apoferritin_0107/FoilHole_9_fractions.mrc"):
        assert "project apoferritin" in acts[("blocked", f)]
    assert ("warn", "alice_spliceosome_0104/FoilHole_8_fractions.mrc") in acts
    fac = await page.http.get("/facility", headers={"Authorization": f"Bearer {o.token.decode()}"})
    assert fac.text.count("project apoferritin: paper") == 2 and fac.text.count("owner:alice") == 2
    # the next digest warns of the rest, not of the held project
    await sweep(o, [0, 14, 46])
    [msg] = [m for rc, m in o.s.box.messages if rc == ["alice@lab.example"]]
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "alice_spliceosome_0104" in text and "alice_apoferritin" not in text


async def test_a_project_with_anyone_elses_data_is_refused_without_naming_them(page: Page) -> None:
    path = page.link("alice")
    good = {"csrf": page.csrf(path), "until": day_after(30), "reason": "x"}
    r = await page.http.post(f"{path}/hold-project", data={**good, "project": project_id("ribosome")})
    assert r.status_code == 403 and "project ribosome also holds data that is not yours" in r.text
    assert "bob" not in r.text.split("Not done:")[1].split("</p>")[0]
    r = await page.http.post(f"{path}/hold-project", data={**good, "project": project_id("nothing")})
    assert r.status_code == 404 and "no project of yours" in r.text
    # bob's link cannot hold alice's project either: the id is the same, the owner is not
    bob = page.link("bob")
    r = await page.http.post(
        f"{bob}/hold-project", data={**good, "csrf": page.csrf(bob), "project": project_id("apoferritin")}
    )
    assert r.status_code == 404
    # same limits as a session: the maximum hold, a reason, the link's own CSRF token
    apo = {**good, "project": project_id("apoferritin")}
    r = await page.http.post(f"{path}/hold-project", data={**apo, "until": day_after(400)})
    assert r.status_code == 400 and "at most" in r.text
    r = await page.http.post(f"{path}/hold-project", data={**apo, "reason": "  "})
    assert r.status_code == 400 and "reason" in r.text
    r = await page.http.post(f"{path}/hold-project", data={**apo, "csrf": page.csrf(page.link("alice"))})
    assert r.status_code == 403 and "security token" in r.text
    r = await page.http.post(f"{path}/hold-project", data={**apo, "until": "2020-01-01"})
    assert r.status_code == 400 and "past" in r.text
    assert held(page) == {}
    refused = page.audit("owner-page.refused")
    assert any("project ribosome" in str(d["reason"]) for d in refused)
    assert any("no project of yours" in str(d["reason"]) and d["owner"] == "bob" for d in refused)


async def test_a_session_folder_with_another_owners_files_is_not_held_from_the_page(page: Page) -> None:
    o, path = page.o, page.link("alice")
    r = await page.http.get(path)
    assert "shared_0110" in r.text  # alice has a file there...
    r = await page.http.post(
        f"{path}/hold",
        data={"csrf": page.csrf(path), "session": sid(o, "shared_0110"), "until": day_after(30), "reason": "x"},
    )
    # ...but a hold on the folder would keep bob's file too
    assert r.status_code == 403 and "session shared_0110 also holds data that is not yours" in r.text
    assert "bob" not in r.text.split("Not done:")[1].split("</p>")[0]
    assert held(page) == {}


async def test_html_in_a_folder_name_is_text_on_the_page_the_facility_view_and_the_digest(page: Page) -> None:
    o, path = page.o, page.link("alice")
    r = await page.http.post(
        f"{path}/hold",
        data={"csrf": page.csrf(path), "session": sid(o, HTML_SESSION), "until": day_after(9), "reason": "<i>r</i>"},
    )
    assert r.status_code == 303, r.text
    r = await page.http.get(r.headers["location"].replace("../", "/o/"))
    fac = await page.http.get("/facility", headers={"Authorization": f"Bearer {o.token.decode()}"})
    for html in (r.text, fac.text):
        assert "<b onmouseover" not in html and "<i>r</i>" not in html
        assert "&lt;b onmouseover=&#34;x&#34;&gt;&amp;_0111" in html and "&lt;i&gt;r&lt;/i&gt;" in html
    jr.release_hold(page.j, HTML_SESSION, time.time())
    await sweep(o, [0, 14, 46])
    [msg] = [m for rc, m in o.s.box.messages if rc == ["alice@lab.example"]]
    digest = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<b onmouseover" not in digest and "&lt;b onmouseover=&#34;x&#34;&gt;&amp;_0111" in digest


async def test_a_line_break_in_a_folder_name_does_not_break_the_extension_mail(page: Page) -> None:
    o, path = page.o, page.link("alice")
    r = await page.http.post(
        f"{path}/extend",
        data={"csrf": page.csrf(path), "session": sid(o, LINE_SESSION), "until": day_after(400), "reason": "long"},
    )
    assert r.status_code == 303 and "done=asked&" in r.headers["location"], r.text[:300]
    [(rcpt, msg)] = o.s.box.messages
    assert rcpt == ["facility@lab.example"] and msg["Bcc"] is None
    assert "alice asks to keep alice_line??Bcc: eve@example.org_0112 until" in msg["Subject"]
    assert LINE_SESSION in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    # the command the facility pastes to grant it names the session as one word, whatever its name
    for session in (LINE_SESSION, SHELL_SESSION):
        o.s.box.messages.clear()
        r = await page.http.post(
            f"{path}/extend",
            data={"csrf": page.csrf(path), "session": sid(o, session), "until": day_after(400), "reason": "long"},
        )
        assert r.status_code == 303
        [(_, msg)] = o.s.box.messages
        body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        command = body.split("To grant it (the session's name quoted for the shell): ")[1].split("\n(request")[0]
        args = shlex.split(command)
        assert args[:3] == ["acqd", "hold", session] and args[3] == "--until"
        assert datetime.fromisoformat(args[4]) > datetime.now(UTC) + timedelta(days=399)


@pytest.mark.parametrize("hours", [13, 14, -10, -12])
async def test_a_day_chosen_anywhere_on_earth_is_kept_all_that_day_there(page: Page, hours: int) -> None:
    """An owner in UTC+13 (or UTC-10) picks "until D": the data is held until D has ended where they are."""
    o, path = page.o, page.link("alice")
    zone = timezone(timedelta(hours=hours))
    chosen = day_after(100)
    r = await page.http.post(
        f"{path}/hold",
        data={"csrf": page.csrf(path), "session": sid(o, "alice_spliceosome_0104"), "until": chosen, "reason": "x"},
    )
    assert r.status_code == 303
    [(_, _, until)] = held(page).values()
    end_there = datetime.fromisoformat(chosen).replace(tzinfo=zone) + timedelta(days=1)
    hold = Hold("alice_spliceosome_0104", until, "x", str(o.s.watch))
    it = Item(1, "alice_spliceosome_0104/FoilHole_8_fractions.mrc", "alice_spliceosome_0104", "g", "central", 1, 0.0)
    assert hold.covers(it, end_there.timestamp() - 60)  # the last minute of D there: still held
    assert until - end_there.timestamp() <= 27 * 3600  # and not a day and more beyond it, anywhere
    r = await page.http.get(path)
    shown = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%d %H:%M UTC")
    assert f"kept until {shown}" in r.text and shown.endswith("12:00 UTC")


@pytest.mark.parametrize("until", ["9999-12-31", "0001-01-01", "2026-02-30", "2027-1-1x", "x" * 300])
async def test_odd_dates_are_refused_in_one_line(page: Page, until: str) -> None:
    o, path = page.o, page.link("alice")
    for action in ("hold", "extend"):
        r = await page.http.post(
            f"{path}/{action}",
            data={"csrf": page.csrf(path), "session": sid(o, "alice_ribosome_0105"), "until": until, "reason": "x"},
        )
        assert r.status_code == 400, (action, r.text[:300])
        assert ("not a date" in r.text or "past" in r.text) and "x" * 50 not in r.text
    assert held(page) == {} and page.audit("owner-page.extension-request") == []


async def test_a_big_body_is_refused_even_without_a_content_length(page: Page) -> None:
    o, path = page.o, page.link("alice")
    body = f"csrf={page.csrf(path)}&session={sid(o, 'alice_ribosome_0105')}&until={day_after(9)}&reason=".encode()

    async def chunks() -> AsyncIterator[bytes]:
        yield body
        for _ in range(100):
            yield b"x" * 1024

    r = await page.http.post(
        f"{path}/hold", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 413 and held(page) == {}
    small = body + b"fine"

    async def one() -> AsyncIterator[bytes]:
        yield small

    form = {"content-type": "application/x-www-form-urlencoded"}
    r = await page.http.post(f"{path}/hold", content=one(), headers=form)
    assert r.status_code == 303 and list(held(page)) == ["alice_ribosome_0105"]


def test_one_links_csrf_token_serves_no_other_link() -> None:
    secret = b"s" * 40
    _, a1 = links.make_token(secret, "alice", 2e9)
    _, a2 = links.make_token(secret, "alice", 2e9)
    _, b = links.make_token(secret, "bob", 2e9, link_id=a1.link_id)  # even with the same link id
    token = links.csrf_token(secret, a1)
    assert links.csrf_ok(secret, a1, token)
    assert not links.csrf_ok(secret, a2, token) and not links.csrf_ok(secret, b, token)
    forged = base64.urlsafe_b64encode(b"x" * 32).rstrip(b"=").decode()
    assert not links.csrf_ok(secret, a1, forged)


def test_the_example_policy_names_projects_and_a_pattern_without_the_group_is_refused(tmp_path: Path) -> None:
    policy = load_policy(Path(__file__).parent.parent / "policies" / "cryoem-facility.yaml")
    owners = policy.spec.owners
    assert owners.project_of("alice_apoferritin_20260101/FoilHole_1_fractions.mrc") == "apoferritin"
    assert owners.owner_of("alice_apoferritin_20260101/FoilHole_1_fractions.mrc") == "alice"
    assert owners.project_of("loose_file.mrc") is None
    (tmp_path / "p.yaml").write_text(POLICY.replace("    fallback:", '    project: "^[a-z]+_"\n    fallback:'))
    with pytest.raises(Exception, match=r"\(\?P<project>"):
        load_policy(tmp_path / "p.yaml")
