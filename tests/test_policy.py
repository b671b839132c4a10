"""Retention policy: YAML validation, the pure planner (tables and properties)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acqd.errors import ConfigError
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
    assert p.rule_for("alice_apo_0101/sum_0001_DW.mrc", "falcon", None).name == "sums"
    assert p.rule_for("alice_apo_0101/FoilHole_1_Data.xml", "falcon", None).name == "metadata"
    assert p.spec.owners.owner_of("alice_apo_0101/x.mrc") == "alice"


@pytest.mark.parametrize(
    ("change", "line", "field"),
    [
        (("      warn: 14d", "      warnn: 14d"), 14, "spec.rules.0.warnn"),
        (("      expiration: {after: 60d}", "      expiration: {after: -60d}"), 13, "spec.rules.0.expiration.after"),
        (("      expiration: {after: 60d}", "      expiration: {after: 10d}"), 10, "spec.rules.0"),
        (("kind: RetentionPolicy", "kind: RetentionPolicyy"), 2, "kind"),
        (("tier: capacity}]", "tier: tape}]"), 4, "spec"),
    ],
)
def test_bad_policy_names_file_line_and_field(tmp_path: Path, change: tuple[str, str], line: int, field: str) -> None:
    p = tmp_path / "policy.yaml"
    assert change[0] in BASE
    p.write_text(BASE.replace(change[0], change[1]))
    with pytest.raises(ConfigError) as ei:
        load_policy(p)
    assert f"{p}:{line}: {field}" in str(ei.value), str(ei.value)


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
    [pg] = plan(t0 + 60 * DAY, [moved], p, warnings=[sent], last_sweep=t0 + 59.9 * DAY)
    assert pg.kind == "purge"


def test_no_purge_without_a_delivered_warning_and_its_lead_time() -> None:
    p = policy()
    it = item(days_old=90, tier="capacity")  # long expired, never warned (e.g. the policy just arrived)
    [w] = plan(NOW, [it], p)
    assert w.kind == "warn" and w.at == NOW + 14 * DAY  # the purge date moves out by the lead time
    late = Warning_(1, w.at, NOW)
    assert plan(NOW + 13 * DAY, [it], p, warnings=[late]) == []
    assert kinds(plan(NOW + 14 * DAY, [it], p, warnings=[late], last_sweep=NOW + 13 * DAY)) == ["purge"]


def test_policy_change_never_makes_a_purge_sooner() -> None:
    p30 = policy(BASE.replace("expiration: {after: 60d}", "expiration: {after: 30d}"))
    it = item(days_old=50, tier="capacity")
    announced = Warning_(1, NOW + 10 * DAY, NOW - 4 * DAY)  # warned 4 days ago for a purge in 10 days
    assert plan(NOW, [it], p30, warnings=[announced], last_sweep=NOW - DAY) == []  # still the announced date
    later = policy(BASE.replace("expiration: {after: 60d}", "expiration: {after: 90d}"))
    acts = plan(NOW + 10 * DAY, [it], later, warnings=[announced], last_sweep=NOW + 9 * DAY)
    assert "purge" not in kinds(acts)  # a later date: a new warning first, for the new date


def test_hold_blocks_purge_and_transition() -> None:
    p = policy()
    it = item(days_old=90)
    w = Warning_(1, NOW - 10 * DAY, NOW - 30 * DAY)
    h = Hold("alice_s1", NOW + 30 * DAY, "paper revision")
    acts = plan(NOW, [it], p, holds=[h], warnings=[w], last_sweep=NOW - DAY)
    assert kinds(acts) == ["blocked", "blocked"] and "paper revision" in acts[1].reason
    expired = Hold("alice_s1", NOW - 1, "old")
    assert "purge" in kinds(plan(NOW, [it], p, holds=[expired], warnings=[w], last_sweep=NOW - DAY))


@pytest.mark.parametrize("last", [NOW + 3600, NOW - 3 * DAY])
def test_clock_jumps_block_purges(last: float) -> None:
    p = policy()
    it = item(days_old=90)
    w = Warning_(1, NOW - 10 * DAY, NOW - 30 * DAY)
    [a] = [a for a in plan(NOW, [it], p, warnings=[w], last_sweep=last) if a.item.id == 1 and a.kind != "transition"]
    assert a.kind == "blocked" and "clock" in a.reason


def test_caps_limit_a_sweep() -> None:
    p = policy(BASE + "  caps: {maxItemsPerSweep: 3, maxBytesPerSweep: 1000}\n")
    items = [item(i, days_old=90, size=300, tier="capacity") for i in range(10)]
    ws = [Warning_(i, NOW - 10 * DAY, NOW - 30 * DAY) for i in range(10)]
    acts = plan(NOW, items, p, warnings=ws, last_sweep=NOW - DAY)
    assert kinds(acts).count("purge") == 3 and kinds(acts).count("blocked") == 7


# --- properties ---------------------------------------------------------------------------------


def policy_with(expire_days: int, warn_days: int, max_items: int, max_bytes: int) -> Policy:
    return policy(
        BASE.replace("expiration: {after: 60d}", f"expiration: {{after: {expire_days}d}}")
        .replace("warn: 14d", f"warn: {warn_days}d")
        .replace("transitions: [{after: 14d, tier: capacity}]", "transitions: []")
        + f"  caps: {{maxItemsPerSweep: {max_items}, maxBytesPerSweep: {max_bytes}}}\n"
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Policy, float, list[Item], list[Hold], list[Warning_], float | None]:
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
    last = draw(st.one_of(st.none(), st.floats(now - 5 * DAY, now + 2 * DAY)))
    return pol, now, items, holds, warnings, last


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_planner_never_purges_out_of_policy(
    sc: tuple[Policy, float, list[Item], list[Hold], list[Warning_], float | None],
) -> None:
    pol, now, items, holds, warnings, last = sc
    acts = plan(now, items, pol, holds, warnings, last)
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
        assert last is None or 0 <= now - last <= pol.spec.guards.maxClockJumpForward  # sane clock
    assert len(purges) <= pol.spec.caps.maxItemsPerSweep
    assert sum(a.item.size for a in purges) <= pol.spec.caps.maxBytesPerSweep
    assert len({a.item.id for a in purges}) == len(purges)
