"""The owner page in a real browser (Debian's chromium driven by Playwright): from the warning
e-mail caught by aiosmtpd to a hold the next sweeps honour, and the refusals a browser can provoke.

Set ACQD_SCREENSHOTS=DIR to keep screenshots of the owner page and the facility view (the README's)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from acqd import journal as jr
from acqd.journal import Journal, journal_path
from acqd.owners import links
from acqd.owners.access import session_id
from acqd.policy.model import DAY
from tests.conftest import Background, need_path, run_acqd, wait_for
from tests.owner_fixtures import digest_links, owners_setup, sweep
from tests.servers import free_port

pytestmark = [pytest.mark.service, pytest.mark.slow]

APOFERRITIN = "alice_apoferritin_0101/FoilHole_1_fractions.mrc"
SPLICEOSOME = "alice_spliceosome_0104/FoilHole_8_fractions.mrc"


def chromium() -> str:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        need_path(None, "playwright not installed (pip install playwright; never `playwright install`)")
    path = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")
    return need_path(path, "Debian's chromium not installed (apt-get install chromium): the browser test needs it")


def until_text(days: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() + days * DAY))


async def test_an_owner_keeps_a_session_from_the_warning_email(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    browser_path = chromium()
    shots = os.environ.get("ACQD_SCREENSHOTS")
    port = free_port()
    async for o in owners_setup(tmp_path, port):
        await sweep(o, [0, 14, 46])  # day 46: the two-week warning of the movies (purged on day 60)
        link, _ = digest_links(o, "alice@lab.example")
        [(_, mail)] = [(r, m) for r, m in o.s.box.messages if r == ["alice@lab.example"]]
        assert "alice_spliceosome_0104" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        server = Background("owner-page", "--config", str(o.cfg_path))
        base = f"http://127.0.0.1:{port}"

        def up(base: str = base) -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_for(up, timeout=60, what="`acqd owner-page`", daemon=server)
            args = ["--no-sandbox"] if os.geteuid() == 0 else []
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=browser_path, args=args)
                page = await browser.new_page()
                resp = await page.goto(link)
                assert resp is not None and resp.status == 200
                assert await page.get_by_role("heading", level=1).inner_text() == "Data of alice on krios"
                table = page.get_by_role("table")
                assert "alice_spliceosome_0104" in await table.inner_text()
                assert "bob_ribosome" not in await page.content()
                keep = page.locator("form", has=page.get_by_role("button", name="Keep this session"))
                await keep.get_by_label("Session").select_option(session_id(str(o.s.watch), "alice_apoferritin_0101"))
                await keep.get_by_label("Keep until").fill(until_text(100))
                await keep.get_by_label("Reason").fill("paper revision")
                await keep.get_by_role("button", name="Keep this session").press("Enter")  # the keyboard works
                status = page.get_by_role("status")
                assert "Kept: alice_apoferritin_0101 is on hold until" in await status.inner_text()
                holds = page.locator("ul.holds")
                assert "alice_apoferritin_0101" in await holds.inner_text()
                assert "paper revision" in await holds.inner_text()
                await page.get_by_role("button", name="Release the hold on alice_apoferritin_0101").is_visible()
                if shots:
                    await page.set_viewport_size({"width": 1200, "height": 900})
                    await page.screenshot(path=f"{shots}/owner-page.png", full_page=True)
                phone = await browser.new_page(viewport={"width": 390, "height": 844})
                await phone.goto(page.url)
                assert await phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
                if shots:
                    await phone.screenshot(path=f"{shots}/owner-page-phone.png", full_page=True)

                # what a browser can do wrong: each refused with a clear page
                expired, _ = links.make_token(o.secret, "alice", time.time() - 60)
                r = await page.goto(f"{base}/o/{expired}")
                assert r is not None and r.status == 410 and "expired" in await page.content()
                tampered = link[:-2] + ("xx" if not link.endswith("xx") else "yy")
                r = await page.goto(tampered)
                assert r is not None and r.status == 403 and "damaged" in await page.content()
                forged = await browser.new_page(bypass_csp=True)  # lets the test edit the form in the page
                await forged.goto(link)
                form = forged.locator("form", has=forged.get_by_role("button", name="Keep this session"))
                bob = session_id(str(o.s.watch), "bob_ribosome_0102")
                await form.locator("option").first.evaluate("(el, v) => { el.value = v }", bob)
                await form.get_by_label("Keep until").fill(until_text(100))
                await form.get_by_label("Reason").fill("not mine")
                async with forged.expect_navigation() as nav:
                    await form.get_by_role("button", name="Keep this session").click()
                r = await nav.value
                assert r is not None and r.status == 404 and "no session of yours" in await forged.content()
                await forged.goto(link)
                form = forged.locator("form", has=forged.get_by_role("button", name="Keep this session"))
                await form.locator("input[name=csrf]").evaluate("el => el.remove()")
                await form.get_by_label("Keep until").fill(until_text(100))
                await form.get_by_label("Reason").fill("no token")
                async with forged.expect_navigation() as nav:
                    await form.get_by_role("button", name="Keep this session").click()
                r = await nav.value
                assert r is not None and r.status == 403 and "security token" in await forged.content()

                staff = await browser.new_context(
                    http_credentials={"username": "facility", "password": o.token.decode()}
                )
                fpage = await staff.new_page()
                r = await fpage.goto(f"{base}/facility")
                assert r is not None and r.status == 200
                assert "paper revision" in await fpage.content()
                if shots:
                    await fpage.screenshot(path=f"{shots}/facility-view.png", full_page=True)
                await browser.close()
        finally:
            code, err = server.terminate()
        assert code == 0, err

        listed = run_acqd("hold", "--list", "--config", str(o.cfg_path))
        assert "alice_apoferritin_0101" in listed.stdout and "paper revision" in listed.stdout
        j = Journal(journal_path(o.cfg.state_dir), readonly=True)
        try:
            held = [d for _, _, d in jr.audit_actions(j, "hold") if d.get("via") == "owner-page"]
            refused = [str(d["reason"]) for _, _, d in jr.audit_actions(j, "owner-page.refused")]
        finally:
            j.close()
        assert [d["owner"] for d in held] == ["alice"] and held[0]["reason"] == "paper revision"
        assert any("expired" in x for x in refused) and any("damaged" in x for x in refused)
        assert any("no session of yours" in x for x in refused) and any("CSRF" in x for x in refused)

        await sweep(o, [61])  # past the purge date: the held session survives, the other is gone
        assert (o.s.capacity / APOFERRITIN).exists()
        assert not (o.s.capacity / SPLICEOSOME).exists() and not (o.s.central / SPLICEOSOME).exists()
        assert not (o.s.capacity / "bob_ribosome_0102/FoilHole_3_fractions.mrc").exists()
