"""Retention policy: YAML validation, the pure planner (tables and properties)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acqd.errors import ConfigError
from acqd.policy.clock import ClockState, Reading, acknowledge, advance
from acqd.policy.model import DAY, Policy, load_policy
from acqd.policy.planner import Hold, Item, Warning_, plan
from tests.conftest import REPO

BASE = """\
apiVersion: acqd/v1
kind: RetentionPolicy
metadata: {name: t}
spec:
  tiers: [central, capacity]
  dataClasses:
    movie: {globs: ["*.mrc"]}
  owners: {pattern: "^(?P<owner>[a-z]+)_", emails: {alice: alice@x.org}, fallback: staff@x.org}
  rules:
    - name: movies
      match: {dataClass: movie}
      transitions: [{after: 14d, tier: capacity}]
      expiration: {after: 60d}
      warn: 14d
  default: {name: keep}
"""


def policy(text: str = BASE) -> Policy:
    import yaml

    return Policy.model_validate(yaml.safe_load(text))


def test_shipped_policies_load() -> None:
    names = {load_policy(p).metadata.name for p in (REPO / "policies").glob("*.yaml")}
    assert {"cryoem-facility", "lightsheet-lab", "default"} <= names
    p = load_policy(REPO / "policies" / "cryoem-facility.yaml")
    assert p.rule_for("alice_apo_0101/movie_00001.mrc", "gatan-k3", None).name == "movies"
    assert p.rule_for("alice_apo_0101/grid1/FoilHole_1_fractions.mrc", "falcon", None).name == "movies"
    # the names EPU and Direct Electron's software write (EPU's capital F fell through to "sums": kept
    # for ever, and `acqd plan` said nothing was due)
    epu = "alice_apo_0101/Images-Disc1/GridSquare_1/Data/FoilHole_25313117_Data_25301428_25301430_20210707_085408"
    de = "alice_apo_0101/ROI_Random_Scan_movie.mrc"
    for name, det in [
        (f"{epu}_Fractions.mrc", "falcon"),
        (f"{epu}_Fractions.tiff", "falcon"),
        (f"{epu}_EER.eer", "falcon"),
        (de, "direct-electron"),
        ("alice_apo_0101/apof_00012_Dec05_12.34.56.mrc", "gatan-k3"),  # SerialEM's frame file names
    ]:
        assert p.rule_for(name, det, None).name == "movies", name
    assert p.rule_for(f"{epu}.mrc", "falcon", None).name == "sums"  # EPU's sum beside the movie
    assert p.rule_for("alice_apo_0101/sum_0001_DW.mrc", "falcon", None).name == "sums"
    assert p.rule_for("alice_apo_0101/FoilHole_1_Data.xml", "falcon", None).name == "metadata"
    # a light-sheet root beside the cryo-EM cameras (deploy/acqd.example.yaml): its stacks are no movies
    assert p.rule_for("bob_fish_0101/session_000/stack_00000.tif", "hamamatsu-orca", None).name == "keep"
    assert p.rule_for("alice_apo_0101/movie_00001.tif", "gatan-k3", None).name == "movies"
    assert p.spec.owners.owner_of("alice_apo_0101/x.mrc") == "alice"


@pytest.mark.parametrize(
    ("change", "line", "field"),
    [
        (("      warn: 14d", "      warnn: 14d"), 14, "spec.rules.0.warnn"),
        (("      expiration: {after: 60d}", "      expiration: {after: -60d}"), 13, "spec.rules.0.expiration.after"),
        (("      expiration: {after: 60d}", "      expiration: {after: 10d}"), 10, "spec.rules.0"),
        (("kind: RetentionPolicy", "kind: RetentionPolicyy"), 2, "kind"),
        # a rule naming what does not exist: reported at the rule's own line (a review: all at `spec:`)
        (("tier: capacity}]", "tier: tape}]"), 12, "spec.rules.0.transitions.0.tier"),
        (("match: {dataClass: movie}", "match: {dataClass: movies}"), 11, "spec.rules.0.match.dataClass"),
        (("  default: {name: keep}", "  default: {name: movies}"), 15, "spec.default.name"),
        # a warning nobody gets, or none at all, and the purge follows all the same (a review)
        (("      warn: 14d", "      warn: 0d"), 10, "spec.rules.0"),
        (("alice: alice@x.org", "alice: alice at x dot org"), 8, "spec.owners.emails"),
        (("fallback: staff@x.org", "fallback: the facility"), 8, "spec.owners.fallback"),
        (("  tiers: [central, capacity]", "  tiers: [central, capacity]\n  interval: 0s"), 6, "spec.interval"),
    ],
)
def test_bad_policy_names_file_line_and_field(tmp_path: Path, change: tuple[str, str], line: int, field: str) -> None:
    p = tmp_path / "policy.yaml"
    assert change[0] in BASE
    p.write_text(BASE.replace(change[0], change[1]))
    with pytest.raises(ConfigError) as ei:
        load_policy(p)
    assert f"{p}:{line}: {field}" in str(ei.value), str(ei.value)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (("expiration: {after: 60d}", "expiration: {after: 6m}"), "'m' is minutes here"),  # six months meant
        (("expiration: {after: 60d}", "expiration: {after: 90}"), "needs its unit, e.g. '90d'"),  # 90 days meant
        (("warn: 14d", "warn: 2m"), "'60d' for 2 months"),
        (("warn: 14d", "warn: '14'"), "needs its unit"),
        (("warn: 14d", "warn: 6ms"), "milliseconds are no retention age"),
        (("expiration: {after: 60d}", "expiration: {after: 2 month}"), "'14d', '2w', '180d'"),  # no '5m' offered
    ],
)
def test_a_retention_age_that_reads_as_minutes_or_seconds_is_refused(
    tmp_path: Path, change: tuple[str, str], says: str
) -> None:
    """`6m` meant six months and purged after six minutes; `90` meant days and purged after 90 s
    (found by a first-try review: `acqd check` said OK). A retention age spells its unit out, and
    `m` is refused with what to write instead."""
    p = tmp_path / "policy.yaml"
    assert change[0] in BASE
    p.write_text(BASE.replace(change[0], change[1]))
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_policy(p)
    rehearsal = BASE.replace("after: 14d, tier", "after: 1h, tier").replace(
        "expiration: {after: 60d}", "expiration: {after: 2h}"
    )
    p.write_text(rehearsal.replace("warn: 14d", "warn: 90s"))
    assert load_policy(p).spec.rules[0].expiration is not None  # a rehearsal in seconds or hours still loads


# a list or a display name in one entry (`alice,bob@x.org` reached bob only, and passed for delivered: a review)
@pytest.mark.parametrize("notify", ["owners", "facility", "desk@", "'alice,bob@x.org'", "'<desk@x.org>'"])
def test_a_notify_entry_that_is_no_recipient_is_refused(tmp_path: Path, notify: str) -> None:
    """`notify: [owners]` (meant `owner`) became a recipient address: warnings went nowhere and purges
    followed them."""
    p = tmp_path / "policy.yaml"
    p.write_text(BASE.replace("warn: 14d", f"warn: 14d\n      notify: [{notify}]"))
    with pytest.raises(ConfigError, match="neither 'owner', 'fallback' nor an e-mail address"):
        load_policy(p)
    p.write_text(
        BASE.replace("warn: 14d", "warn: 14d\n      notify: [owner, fallback, desk@lab.example.org, root@localhost]")
    )
    assert load_policy(p).spec.rules[0].notify == ("owner", "fallback", "desk@lab.example.org", "root@localhost")


def test_a_purging_rule_that_notifies_nobody_is_refused(tmp_path: Path) -> None:
    """Found by a stranger's review (twenty-sixth session): `notify: []` on a rule that purges was
    taken (nor did `acqd check` say anything): its files had nobody to warn, their purges waited for
    ever, said by one log line a sweep. Refused at load, with what to list; a rule that only keeps or
    moves may notify nobody."""
    p = tmp_path / "policy.yaml"
    p.write_text(BASE.replace("warn: 14d", "warn: 14d\n      notify: []"))
    with pytest.raises(ConfigError, match="its notify is empty: nobody would be warned"):
        load_policy(p)
    p.write_text(BASE.replace("expiration: {after: 60d}", "").replace("warn: 14d", "warn: 14d\n      notify: []"))
    assert load_policy(p).spec.rules[0].notify == ()


def test_expiry_shorter_than_warning_says_why(tmp_path: Path) -> None:
    p = tmp_path / "policy.yaml"
    p.write_text(BASE.replace("expiration: {after: 60d}", "expiration: {after: 10d}"))
    with pytest.raises(ConfigError, match="shorter than its warning period"):
        load_policy(p)


def item(
    i: int = 1,
    days_old: float = 0.0,
    now: float = 100 * DAY,
    name: str = "alice_s1/m.mrc",
    size: int = 100,
    tier: str = "central",
) -> Item:
    return Item(i, name, name.split("/")[0], "gatan-k3", tier, size, now - days_old * DAY)


NOW = 100 * DAY


def kinds(actions: list) -> list[str]:  # type: ignore[type-arg]
    return [a.kind for a in actions]


def test_timeline_of_one_movie() -> None:
    p = policy()
    t0 = 10 * DAY
    it = Item(1, "alice_s1/m.mrc", "alice_s1", "gatan-k3", "central", 100, t0)
    assert plan(t0 + 13 * DAY, [it], p) == []
    [tr] = plan(t0 + 14 * DAY, [it], p)
    assert tr.kind == "transition" and tr.tier == "capacity"
    moved = Item(1, it.relpath, it.session, it.detector, "capacity", 100, t0)
    assert plan(t0 + 45.9 * DAY, [moved], p) == []
    [w] = plan(t0 + 46 * DAY, [moved], p)
    assert w.kind == "warn" and w.recipients == ("alice@x.org",) and w.at == t0 + 60 * DAY
    sent = Warning_(1, w.at, t0 + 46 * DAY)
    assert plan(t0 + 59.9 * DAY, [moved], p, warnings=[sent]) == []  # warned: waiting for the date
    [pg] = plan(t0 + 60 * DAY, [moved], p, warnings=[sent])
    assert pg.kind == "purge"


def test_no_purge_without_a_delivered_warning_and_its_lead_time() -> None:
    p = policy()
    it = item(days_old=90, tier="capacity")  # long expired, never warned (e.g. the policy just arrived)
    [w] = plan(NOW, [it], p)
    assert w.kind == "warn" and w.at == NOW + 14 * DAY  # the purge date moves out by the lead time
    late = Warning_(1, w.at, NOW)
    assert plan(NOW + 13 * DAY, [it], p, warnings=[late]) == []
    assert kinds(plan(NOW + 14 * DAY, [it], p, warnings=[late])) == ["purge"]


def test_copies_on_a_tier_the_policy_does_not_manage_are_never_warned_moved_or_purged() -> None:
    """`spec.tiers` names the tiers a policy manages: a copy on another tier of acqd.yaml (an archive,
    a curated tier) was warned about and purged as if listed, the only copy of a released file (a
    stranger's review). Those copies are left as they are; the same file's copy on a listed tier is not."""
    p = policy(
        BASE.replace("tiers: [central, capacity]", "tiers: [central]").replace(
            "      transitions: [{after: 14d, tier: capacity}]\n", ""
        )
    )
    kept = item(1, days_old=90, tier="archive")
    managed = item(2, days_old=90, tier="central")
    assert [(a.kind, a.item.id) for a in plan(NOW, [kept, managed], p)] == [("warn", 2)]
    warned = [Warning_(1, NOW, NOW - 30 * DAY), Warning_(2, NOW, NOW - 30 * DAY)]
    assert [(a.kind, a.item.id) for a in plan(NOW, [kept, managed], p, warnings=warned)] == [("purge", 2)]


def test_policy_change_never_makes_a_purge_sooner() -> None:
    p30 = policy(BASE.replace("expiration: {after: 60d}", "expiration: {after: 30d}"))
    it = item(days_old=50, tier="capacity")
    announced = Warning_(1, NOW + 10 * DAY, NOW - 4 * DAY)  # warned 4 days ago for a purge in 10 days
    assert plan(NOW, [it], p30, warnings=[announced]) == []  # still the announced date
    later = policy(BASE.replace("expiration: {after: 60d}", "expiration: {after: 90d}"))
    acts = plan(NOW + 10 * DAY, [it], later, warnings=[announced])
    assert "purge" not in kinds(acts)  # a later date: a new warning first, for the new date


def test_hold_blocks_purge_and_transition() -> None:
    p = policy()
    it = item(days_old=90)
    w = Warning_(1, NOW - 10 * DAY, NOW - 30 * DAY)
    h = Hold("alice_s1", NOW + 30 * DAY, "paper revision")
    acts = plan(NOW, [it], p, holds=[h], warnings=[w])
    assert kinds(acts) == ["blocked", "blocked"] and "paper revision" in acts[1].reason
    # due (what `acqd plan` shows) once the hold ends, not at the expiry long past
    assert [a.at for a in acts] == [h.until, h.until]
    short = Hold("alice_s1", NOW + DAY, "short")
    late = item(days_old=50)  # expires in 10 days, after the hold
    [blocked] = [a for a in plan(NOW, [late], p, holds=[short], warnings=[w]) if "purge" in a.reason]
    assert blocked.at == late.verified_at + 60 * DAY
    ended_before = Hold("alice_s1", NOW - 11 * DAY, "old")  # ended before the warned date: the warning stands
    assert "purge" in kinds(plan(NOW, [it], p, holds=[ended_before], warnings=[w]))


def test_a_hold_that_outlived_the_warned_date_means_a_new_warning() -> None:
    """Warned for day -10; held from before that date until a minute ago (or released then): the
    data is warned again, for a full lead time ahead, and purged on that date, not at the next sweep."""
    p = policy()
    it = item(days_old=90, tier="capacity")
    w = Warning_(1, NOW - 10 * DAY, NOW - 30 * DAY)
    ended = Hold("alice_s1", NOW - 60, "paper revision")
    [again] = plan(NOW, [it], p, holds=[ended], warnings=[w])
    assert again.kind == "warn" and again.at == NOW + 14 * DAY and "warned again" in again.reason
    second = Warning_(1, again.at, NOW)
    assert "purge" not in kinds(plan(NOW + 13.9 * DAY, [it], p, holds=[ended], warnings=[w, second]))
    assert kinds(plan(NOW + 14 * DAY, [it], p, holds=[ended], warnings=[w, second])) == ["purge"]
    # a hold on another session, or one that ended the second before the date, changes nothing
    other = Hold("bob_s2", NOW - 60, "x")
    assert kinds(plan(NOW, [it], p, holds=[other, Hold("alice_s1", w.purge_at, "y")], warnings=[w])) == ["purge"]


def test_a_policy_that_puts_the_purge_later_warns_again() -> None:
    """The latest delivered warning counts: once the policy puts the purge later than the date in it
    (a longer expiry or lead time), a new warning goes out for the new date, and a later return to the
    old policy keeps the date last announced."""
    p = policy()
    it = item(days_old=50, tier="capacity")  # expires in 10 days
    first = Warning_(1, NOW + 10 * DAY, NOW - 4 * DAY)
    assert plan(NOW, [it], p, warnings=[first]) == []
    longer_lead = policy(BASE.replace("warn: 14d", "warn: 21d"))
    [w] = plan(NOW, [it], longer_lead, warnings=[first])
    assert w.kind == "warn" and w.at == NOW + 21 * DAY
    second = Warning_(1, w.at, NOW)
    assert "purge" not in kinds(plan(NOW + 20 * DAY, [it], p, warnings=[first, second]))  # back to 14d: still day 21
    assert kinds(plan(NOW + 21 * DAY, [it], p, warnings=[first, second])) == ["purge"]
    keep = policy(BASE.replace("      expiration: {after: 60d}\n", ""))  # the rule deletes nothing now
    [void] = plan(NOW, [it], keep, warnings=[first])
    assert void.kind == "void" and void.at == first.purge_at and "called off" in void.reason
    assert plan(NOW, [it], keep) == []  # once called off (the runner keeps that in the journal): nothing


def test_a_hold_on_one_file_or_folder_keeps_only_that() -> None:
    """Holds cover part of a session: a sub-folder or one file, under one watch root or any."""
    p = policy()
    names = ["alice_s1/grid1/a.mrc", "alice_s1/grid1/b.mrc", "alice_s1/grid2/c.mrc", "alice_s1/grid10/d.mrc"]
    items = [
        Item(i, n, "alice_s1", "gatan-k3", "capacity", 100, NOW - 90 * DAY, root="/acq") for i, n in enumerate(names)
    ]
    ws = [Warning_(i, NOW - 10 * DAY, NOW - 30 * DAY) for i in range(len(names))]

    def purged(holds: list[Hold]) -> set[str]:
        return {a.item.relpath for a in plan(NOW, items, p, holds, ws) if a.kind == "purge"}

    assert purged([]) == set(names)
    one = Hold("alice_s1/grid1/a.mrc", NOW + DAY, "figure 3", root="/acq")
    assert purged([one]) == set(names) - {"alice_s1/grid1/a.mrc"}
    folder = Hold("alice_s1/grid1", NOW + DAY, "figure 3")  # not grid10: a folder, not a string prefix
    assert purged([folder]) == {"alice_s1/grid2/c.mrc", "alice_s1/grid10/d.mrc"}
    elsewhere = Hold("alice_s1/grid1/a.mrc", NOW + DAY, "other root", root="/other")
    assert purged([elsewhere]) == set(names)
    [blocked] = [a for a in plan(NOW, items, p, [one], ws) if a.item.relpath == "alice_s1/grid1/a.mrc"]
    assert blocked.kind == "blocked" and "figure 3" in blocked.reason
    young = [Item(0, names[0], "alice_s1", "gatan-k3", "central", 100, NOW - 20 * DAY, root="/acq")]
    assert kinds(plan(NOW, young, p)) == ["transition"]
    assert kinds(plan(NOW, young, p, [one])) == ["blocked"]  # nor moved


def clock_at(wall: float, calendar: float) -> ClockState:
    """A clock state whose wall clock reads `wall` while the trusted calendar says `calendar`."""
    st = advance(None, Reading(calendar - DAY, "b", 0.0), 2 * DAY, 600)
    return advance(st, Reading(wall, "b", DAY), 2 * DAY, 600)


@pytest.mark.parametrize("jump", [13 * DAY, -3 * DAY])
def test_clock_jumps_block_purges(jump: float) -> None:
    p = policy()
    due = item(days_old=61, tier="capacity")
    w = Warning_(1, NOW - DAY, NOW - 15 * DAY)  # due yesterday, by either clock
    sane = clock_at(NOW, NOW)
    assert sane.suspension is None and kinds(plan(0, [due], p, warnings=[w], clock=sane)) == ["purge"]
    later = item(days_old=61 - 13, tier="capacity")  # due in 13 days
    w13 = Warning_(1, NOW + 13 * DAY, NOW - 1 * DAY)
    st = clock_at(NOW + jump, NOW)
    assert st.suspension is not None and st.effective == min(NOW, NOW + jump)
    acts = plan(0, [later], p, warnings=[w13], clock=st)
    assert "purge" not in kinds(acts)
    if jump > 0:  # only the wall clock says it is due: reported as held back by the clock guard
        [a] = acts
        assert a.kind == "blocked" and "clock guard" in a.reason and "jumped forward by 13.0 days" in a.reason
    else:
        assert acts == []


def test_clock_guard_states() -> None:
    fwd, back = 2 * DAY, 600.0
    st = advance(None, Reading(NOW, "b1", 100.0), fwd, back)
    assert (st.calendar, st.effective, st.suspension) == (NOW, NOW, None)
    # the daemon stopped for 5 days, the machine ran: CLOCK_BOOTTIME says so; not a jump
    st = advance(st, Reading(NOW + 5 * DAY, "b1", 100.0 + 5 * DAY), fwd, back)
    assert st.suspension is None and st.calendar == NOW + 5 * DAY
    # one hour later by the boot clock, 13 days by the wall clock: a jump, judged by the trusted calendar
    st = advance(st, Reading(NOW + 18 * DAY + 3600, "b1", 100.0 + 5 * DAY + 3600), fwd, back)
    assert st.suspension is not None and st.effective == NOW + 5 * DAY + 3600
    assert "forward by 13.0 days" in st.suspension.reason
    since = st.suspension.since
    # a reboot: the interval is trusted only if the wall clock says 0..maxClockJumpForward
    st = advance(st, Reading(NOW + 19 * DAY + 3600, "b2", 50.0), fwd, back)
    assert st.suspension is not None and st.suspension.since == since and st.calendar == NOW + 6 * DAY + 3600
    st = ClockState.from_json(st.to_json())  # kept in the journal as JSON
    # an operator vouches for the wall clock (in this boot, 10 s before the sweep): re-anchored there
    acked = acknowledge(st, Reading(NOW + 19 * DAY + 3590, "b2", 40.0), fwd, back)
    assert acked.suspension is None and acked.calendar == NOW + 19 * DAY + 3600
    # an acknowledgement from another boot anchors at the latest reading
    assert acknowledge(st, Reading(0.0, "b0", 1.0), fwd, back).calendar == NOW + 19 * DAY + 3600
    # after a power-off longer than the guard: no trusted measure, suspended until acknowledged
    off = advance(acked, Reading(NOW + 30 * DAY, "b3", 20.0), fwd, back)
    assert off.suspension is not None and off.effective == acked.calendar
    # backwards: the wall clock is behind; effective follows it (later purges), and it is reported
    bk = advance(acked, Reading(acked.last.wall - 3600 + 60, "b2", 100.0), fwd, back)
    assert bk.suspension is not None and bk.effective == bk.last.wall and "backwards" in bk.suspension.reason
    # the clock put right again: the suspension ends by itself
    ok = advance(bk, Reading(acked.last.wall + 120, "b2", 160.0), fwd, back)
    assert ok.suspension is None


def test_caps_limit_a_sweep() -> None:
    p = policy(BASE + "  caps: {maxItemsPerSweep: 3, maxBytesPerSweep: 1000}\n")
    items = [item(i, days_old=90, size=300, tier="capacity") for i in range(10)]
    ws = [Warning_(i, NOW - 10 * DAY, NOW - 30 * DAY) for i in range(10)]
    acts = plan(NOW, items, p, warnings=ws)
    assert kinds(acts).count("purge") == 3 and kinds(acts).count("blocked") == 7


# --- properties ---------------------------------------------------------------------------------


def policy_with(expire_days: int, warn_days: int, max_items: int, max_bytes: int, notify: str = "") -> Policy:
    return policy(
        BASE.replace("expiration: {after: 60d}", f"expiration: {{after: {expire_days}d}}")
        .replace("warn: 14d", f"warn: {warn_days}d" + (f"\n      notify: [{notify}]" if notify else ""))
        .replace("transitions: [{after: 14d, tier: capacity}]", "transitions: []")
        + f"  caps: {{maxItemsPerSweep: {max_items}, maxBytesPerSweep: {max_bytes}}}\n"
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Policy, float, list[Item], list[Hold], list[Warning_]]:
    warn = draw(st.integers(1, 30))
    expire = draw(st.integers(warn, 120))
    pol = policy_with(expire, warn, draw(st.integers(0, 20)), draw(st.integers(0, 5000)))
    now = 1000 * DAY + draw(st.floats(0, DAY))
    n = draw(st.integers(1, 25))
    sessions = ["alice_a", "alice_b", "bob_c"]
    items = [
        Item(
            i,
            f"{(s := draw(st.sampled_from(sessions)))}/f{i}.mrc",
            s,
            "gatan-k3",
            "central",
            draw(st.integers(1, 500)),
            now - draw(st.floats(0, 200)) * DAY,
        )
        for i in range(n)
    ]
    holds = [Hold(s, now + draw(st.floats(-10, 10)) * DAY, "h") for s in draw(st.sets(st.sampled_from(sessions)))]
    warnings = [
        Warning_(i, now + draw(st.floats(-100, 30)) * DAY, now - draw(st.floats(-5, 100)) * DAY)
        for i in draw(st.sets(st.integers(0, n - 1)))
    ]
    return pol, now, items, holds, warnings


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_planner_never_purges_out_of_policy(
    sc: tuple[Policy, float, list[Item], list[Hold], list[Warning_]],
) -> None:
    pol, now, items, holds, warnings = sc
    acts = plan(now, items, pol, holds, warnings)
    purges = [a for a in acts if a.kind == "purge"]
    rule = pol.spec.rules[0]
    assert rule.expiration is not None
    for a in purges:
        it = a.item
        # a delivered warning, at least the lead time old, for a date that has come
        ws = [w for w in warnings if w.item_id == it.id]
        assert any(w.sent_at + rule.warn <= now and w.purge_at <= now for w in ws), (it, ws)
        assert now >= it.verified_at + rule.expiration.after
        assert not any(h.covers(it, now) for h in holds)  # never under a hold
    assert len(purges) <= pol.spec.caps.maxItemsPerSweep
    assert sum(a.item.size for a in purges) <= pol.spec.caps.maxBytesPerSweep
    assert len({a.item.id for a in purges}) == len(purges)


Step = tuple[float, str, float]  # real days elapsed, what happens (tick, jump, reboot, ack), jump in days


@st.composite
def clock_runs(draw: st.DrawFn) -> tuple[Policy, list[float], list[Step]]:
    warn = draw(st.integers(1, 20))
    pol = policy_with(draw(st.integers(warn, 60)), warn, 1000, 10**9)
    ages = draw(st.lists(st.floats(0, 40), min_size=1, max_size=6))  # verified this many days into the run
    steps = draw(
        st.lists(
            st.tuples(
                st.floats(0.01, 3),
                st.sampled_from(["tick", "tick", "tick", "jump", "reboot", "ack"]),
                st.one_of(st.floats(-40, 40), st.floats(-2.5, 2.5), st.just(0.0)),
            ),
            min_size=5,
            max_size=120,
        )
    )
    return pol, ages, steps


@settings(max_examples=300, deadline=None)
@given(clock_runs())
def test_no_purge_before_the_warned_date_whatever_the_wall_clock_does(
    run: tuple[Policy, list[float], list[Step]],
) -> None:
    clock_run(run)


def test_a_warning_sent_while_the_wall_clock_is_behind_keeps_its_full_lead_time() -> None:
    """Found by the property above: the wall clock set back a day (the guard suspends purges and
    judges by the wall clock, the lesser), a warning goes out, then the clock jumps ahead. Stamped
    with the lagging wall clock, the warning looked a day older than it was, and the file went a day
    before its warning period had passed in real time. It is stamped with the trusted calendar now."""
    ticks: list[Step] = [(1.0, "tick", 0.0)] * 4 + [(3.0, "tick", 0.0)] + [(1.0, "tick", 0.0)] * 5
    steps = [*ticks, (1.0, "jump", -1.0), *[(2.0, "tick", 0.0)] * 3, (1.0, "tick", 1.0), (1.0, "jump", 3.0)]
    clock_run((policy_with(2, 2, 1000, 10**9), [19.0], steps))


def test_a_warning_sent_after_an_uncounted_power_off_keeps_its_full_lead_time() -> None:
    """Found by the property above (hub branch, 2026-12-02): the PC is off for 3 days, longer than
    maxClockJumpForward (2 days), so the trusted calendar does not count them and lags the (right)
    wall clock by 3 days; the guard suspends purges. A warning goes out on real day 7, when the
    calendar says day 4. Stamped with the calendar, it looked 3 days older than it was, and once an
    operator acknowledged the wall clock on day 8 the file went one day after the warning instead
    of two. A warning is now dated from the later of the two clocks."""
    steps: list[Step] = [(1.0, "tick", 0.0), (1.0, "tick", 0.0), (3.0, "reboot", 0.0)]
    steps += [(1.0, "tick", 0.0), (1.0, "tick", 0.0), (1.0, "ack", 0.0), *[(1.0, "tick", 0.0)] * 3]
    clock_run((policy_with(2, 2, 1000, 10**9), [4.0], steps))


def clock_run(run: tuple[Policy, list[float], list[Step]]) -> None:
    """Sweeps over a run in which the wall clock jumps forwards and backwards (within one boot and
    across reboots) and operators acknowledge it when it is right: no file is ever purged before the
    date its delivered warning announced, nor less than the warning period after delivery, in real
    time. The only slack: forward jumps across a reboot that stay within maxClockJumpForward (there
    is no trusted measure across a power-off), which the oracle adds up itself."""
    pol, ages, steps = run
    fwd, back = pol.spec.guards.maxClockJumpForward, pol.spec.guards.maxClockJumpBackward
    rule = pol.spec.rules[0]
    real, off, boot, boottime, slack = 1000 * DAY, 0.0, 0, 5.0, 0.0
    items = {
        i: Item(i, f"alice_s/f{i}.mrc", "alice_s", "gatan-k3", "central", 1, real + a * DAY) for i, a in enumerate(ages)
    }
    warnings: list[Warning_] = []
    announced: dict[int, list[tuple[float, float]]] = {}  # item -> (date in the warning, real time delivered)
    state: ClockState | None = None
    for days, event, jump in [(0.0, "tick", 0.0), *steps]:
        real += days * DAY
        boottime += days * DAY
        ack = None
        if event == "jump":
            off += jump * DAY
        elif event == "reboot":
            boot, boottime = boot + 1, 3.0
            gap = days * DAY + jump * DAY
            if jump > 0 and 0 <= gap <= fwd:
                slack += jump * DAY  # a forward jump during a power-off that looks like elapsed time
            off += jump * DAY
        elif event == "ack" and off == 0:  # an honest operator: the wall clock is right
            ack = Reading(real, str(boot), boottime)
            slack = 0.0
        reading = Reading(real + off, str(boot), boottime)
        state = advance(state, reading, fwd, back)
        if ack is not None:
            state = acknowledge(state, ack, fwd, back)
        assert state.effective <= real + slack + 1e-3  # the time retention judges by never runs ahead
        for a in plan(0, [it for it in items.values() if it.verified_at <= real], pol, (), warnings, clock=state):
            if a.kind == "warn":
                warnings.append(Warning_(a.item.id, a.at, state.stamp))  # as the runner
                announced.setdefault(a.item.id, []).append((a.at, real))
            elif a.kind == "purge":
                dates = announced[a.item.id]
                assert all(real + slack + 1e-3 >= date for date, _ in dates), (real, slack, dates)
                assert all(real - sent + slack + 1e-3 >= rule.warn for _, sent in dates)
                del items[a.item.id]


Event = tuple[float, str, int, float]  # days since the last event, what (sweep, hold, release), session, hold days


@st.composite
def hold_runs(draw: st.DrawFn) -> tuple[Policy, list[float], list[Event]]:
    warn = draw(st.integers(1, 20))
    pol = policy_with(draw(st.integers(warn, 40)), warn, draw(st.integers(1, 6)), 10**9)
    ages = draw(st.lists(st.floats(0, 60), min_size=1, max_size=8))  # days old at the start of the run
    events = draw(
        st.lists(
            st.tuples(
                st.floats(0.0, 4),
                st.sampled_from(["sweep", "sweep", "sweep", "hold", "release", "undelivered"]),
                st.integers(0, 2),
                st.floats(0.01, 40),
            ),
            min_size=5,
            max_size=150,
        )
    )
    return pol, ages, events


SESSIONS = ["alice_a", "alice_b", "bob_c"]


def hold_run_start(ages: list[float]) -> tuple[float, dict[int, Item]]:
    t = 1000 * DAY
    return t, {
        i: Item(i, f"{SESSIONS[i % 3]}/f{i}.mrc", SESSIONS[i % 3], "gatan-k3", "central", 1, t - a * DAY)
        for i, a in enumerate(ages)
    }


def hold_event(holds: list[list[float | str]], what: str, s: int, t: float, length: float) -> bool:
    """Apply a hold or a release to `holds` ([session, placed, end]); False for a sweep."""
    if what == "hold":
        holds.append([SESSIONS[s], t, t + length * DAY])
    elif what == "release":
        for h in holds:
            if h[0] == SESSIONS[s] and float(h[2]) > t:
                h[2] = t
    return what in ("hold", "release")


def known_holds(holds: list[list[float | str]], warnings: list[Warning_], t: float) -> list[Hold]:
    """The holds as the journal gives them: in force, or ended after the earliest warned date."""
    since = min((w.purge_at for w in warnings), default=t)
    return [Hold(str(n), float(end), "h") for n, _, end in holds if float(end) > min(since, t)]


@settings(max_examples=300, deadline=None)
@given(hold_runs())
def test_a_purge_follows_a_warning_no_hold_outlived(run: tuple[Policy, list[float], list[Event]]) -> None:
    """Holds placed and released at random times, sweeps (some of whose warnings fail to go out) at
    random times, the planner given the holds as the journal has them (in force, or ended after the
    earliest warned date). Oracle for every purge: not held then; the latest warning delivered for the
    file announced a date that has come, went out at least the lead time before, and no hold was in
    force on the file at any moment between that date and the purge."""
    pol, ages, events = run
    rule = pol.spec.rules[0]
    t, items = hold_run_start(ages)
    holds: list[list[float | str]] = []  # [session, placed, end (until, or the release)]
    warnings: list[Warning_] = []
    purged = 0
    for days, what, s, length in events:
        t += days * DAY
        if hold_event(holds, what, s, t, length):
            continue
        known = known_holds(holds, warnings, t)
        for a in plan(t, list(items.values()), pol, known, warnings):
            if a.kind == "warn":
                assert a.at >= t + rule.warn
                if what != "undelivered":
                    warnings.append(Warning_(a.item.id, a.at, t))
            elif a.kind == "purge":
                it = a.item
                mine = [h for h in holds if h[0] == it.session]
                assert not any(float(p) <= t < float(e) for _, p, e in mine), "purged while held"
                ws = [w for w in warnings if w.item_id == it.id]
                assert ws, "purged without a delivered warning"
                last = max(ws, key=lambda w: w.sent_at)
                assert last.purge_at <= t and last.sent_at + rule.warn <= t, (last, t)
                outlived = [(p, e) for _, p, e in mine if float(p) <= t and float(e) > last.purge_at]
                assert not outlived, f"a hold outlived the warned date {last.purge_at}: {outlived}"
                del items[it.id]
                purged += 1


@settings(max_examples=300, deadline=None)
@given(hold_runs(), st.lists(st.sampled_from(["alice@x.org", "staff@x.org", "desk@x.org"]), max_size=150))
def test_every_recipient_is_warned_before_a_purge(
    run: tuple[Policy, list[float], list[Event]], failing: list[str]
) -> None:
    """As above with three recipients per file (the owner, or the fallback for bob; a facility desk),
    where each sweep's digest to one recipient may fail. Only the recipients still missing a standing
    warning are warned again; no file is purged before *every* recipient's latest delivered warning
    announced a date that has come, went out at least the lead time before, and outlived no hold."""
    pol0, ages, events = run
    rule0 = pol0.spec.rules[0]
    assert rule0.expiration is not None
    pol = policy_with(
        int(rule0.expiration.after // DAY),
        int(rule0.warn // DAY),
        pol0.spec.caps.maxItemsPerSweep,
        10**9,
        notify="owner, desk@x.org",
    )
    rule = pol.spec.rules[0]
    t, items = hold_run_start(ages)
    holds: list[list[float | str]] = []
    warnings: list[Warning_] = []
    sweeps = 0
    for days, what, s, length in events:
        t += days * DAY
        if hold_event(holds, what, s, t, length):
            continue
        fails = failing[sweeps] if sweeps < len(failing) and what == "undelivered" else None
        sweeps += 1
        known = known_holds(holds, warnings, t)
        for a in plan(t, list(items.values()), pol, known, warnings):
            if a.kind == "warn":
                assert a.at >= t + rule.warn
                assert a.recipients, a
                for r in a.recipients:
                    if r != fails:
                        warnings.append(Warning_(a.item.id, a.at, t, r))
            elif a.kind == "purge":
                it = a.item
                owner = "alice@x.org" if it.session.startswith("alice") else "staff@x.org"
                mine = [h for h in holds if h[0] == it.session]
                assert not any(float(p) <= t < float(e) for _, p, e in mine), "purged while held"
                for r in (owner, "desk@x.org"):
                    ws = [w for w in warnings if w.item_id == it.id and w.recipient == r]
                    assert ws, f"purged without a warning delivered to {r}"
                    last = max(ws, key=lambda w: w.sent_at)
                    assert last.purge_at <= t and last.sent_at + rule.warn <= t, (r, last, t)
                    outlived = [(p, e) for _, p, e in mine if float(p) <= t and float(e) > last.purge_at]
                    assert not outlived, f"a hold outlived the date warned to {r}: {outlived}"
                del items[it.id]


def test_a_recipient_whose_digest_failed_is_warned_again_and_the_purge_waits_for_it() -> None:
    pol = policy_with(60, 14, 100, 10**9, notify="owner, desk@x.org")
    it = Item(1, "alice_s/f.mrc", "alice_s", "gatan-k3", "central", 1, NOW - 50 * DAY)
    [w] = [a for a in plan(NOW, [it], pol) if a.kind == "warn"]
    assert set(w.recipients) == {"alice@x.org", "desk@x.org"}
    got = [Warning_(1, w.at, NOW, "desk@x.org")]  # the owner's digest failed
    later = NOW + 3 * DAY
    [again] = plan(later, [it], pol, (), got)
    assert (again.kind, again.recipients) == ("warn", ("alice@x.org",))  # only the one who missed it
    assert again.at >= later + 14 * DAY
    got.append(Warning_(1, again.at, later, "alice@x.org"))
    assert [a.kind for a in plan(w.at + DAY, [it], pol, (), got)] == []  # the desk's date passed: waits for alice's
    assert [a.kind for a in plan(again.at, [it], pol, (), got)] == ["purge"]


def test_a_copy_whose_purge_is_due_is_purged_where_it_is_not_moved_first() -> None:
    """Found by an adversarial review (thirty-first session): a copy due both for a move and for its
    purge in one sweep (a transition added by a reload, or a move that kept failing until the purge
    date) was copied to the new tier and deleted from the old one, and the purge, acting on the old
    copy, found it gone and recorded it `missing` (what a lost copy looks like in the audit); the real
    purge waited a sweep. A copy whose purge is due is purged where it is."""
    p = policy()
    it = item(days_old=90)  # on central; the move to capacity was due on day 14
    w = Warning_(1, NOW - 10 * DAY, NOW - 30 * DAY)
    assert kinds(plan(NOW, [it], p, warnings=[w])) == ["purge"]
    # not due yet (warned for a later date): moved as before
    later = Warning_(1, NOW + 5 * DAY, NOW - 9 * DAY)
    assert kinds(plan(NOW, [it], p, warnings=[later])) == ["transition"]


def test_a_file_nobody_can_be_warned_about_is_planned_blocked_not_warned() -> None:
    """Found by an adversarial review (thirty-first session): with no owners.fallback, `acqd plan` listed
    a warning and a purge date for a file whose owner has no address, while the daemon warned nobody
    and never purged it. The plan says its purge is held back, and why."""
    p = policy(BASE.replace(", fallback: staff@x.org", ""))
    bob = item(days_old=50, name="bob_s1/m.mrc")  # no address for bob, and no fallback
    [blocked] = [a for a in plan(NOW, [bob], p) if a.kind != "transition"]
    assert blocked.kind == "blocked" and "nobody to warn" in blocked.reason, blocked
    alice = item(days_old=50)
    assert "warn" in kinds(plan(NOW, [alice], p))  # alice has an address: warned as before


@pytest.mark.parametrize("address", ["alice,bob@x.org", "alice@x.org,", "<alice@x.org>", "alice;bob@x.org"])
def test_an_owners_address_that_is_a_list_or_a_display_name_is_refused(tmp_path: Path, address: str) -> None:
    """Found by a stranger's review (thirty-third session): `alice,bob@x.org` passed for an address; the
    mail server took bob and refused alice, and the warning counted as delivered."""
    p = tmp_path / "policy.yaml"
    p.write_text(BASE.replace("emails: {alice: alice@x.org}", f"emails: {{alice: '{address}'}}"))
    with pytest.raises(ConfigError, match="is not an e-mail address"):
        load_policy(p)
    p.write_text(BASE.replace("fallback: staff@x.org", f"fallback: '{address}'"))
    with pytest.raises(ConfigError, match="is not an e-mail address"):
        load_policy(p)
