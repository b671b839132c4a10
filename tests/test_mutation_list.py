"""The mutation list (`python -m bench mutants`) stays maintained: every mutant still applies to
today's code (exactly once), and every test it names exists. The mutants themselves run by hand
(minutes each); this check runs with the suite, so a change that moves a safeguard says so at once."""

from __future__ import annotations

import re

import pytest

from bench.mutants import MUTANTS, REPO, Mutant, _apply


def test_ids_are_unique() -> None:
    ids = [m.id for m in MUTANTS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("m", MUTANTS, ids=lambda m: m.id)
def test_mutant_still_applies_and_names_real_tests(m: Mutant) -> None:
    source = (REPO / m.file).read_text()
    mutated = _apply(source, m)  # raises "mutant X no longer applies: snippet not found"
    assert mutated != source
    assert m.tests
    for node in m.tests:
        path, _, name = node.partition("::")
        func = name.partition("[")[0]
        assert re.search(rf"^(async )?def {func}\(", (REPO / path).read_text(), re.M), f"{node} does not exist"


def test_a_moved_snippet_fails_loudly() -> None:
    m = MUTANTS[0]
    with pytest.raises(SystemExit, match=f"mutant {m.id} no longer applies: snippet not found"):
        _apply("# the code moved\n", m)


def test_every_parametrized_test_a_mutant_names_is_collected() -> None:
    """A node id with a case (`test_x[policy]`) names one of the test's collected cases: a wrong case id
    made the runner report "error" (no test ran), not caught."""
    import subprocess
    import sys

    nodes = sorted({n for m in MUTANTS for n in m.tests if "[" in n})
    files = sorted({n.partition("::")[0] for n in nodes})
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    collected = set(r.stdout.splitlines())
    missing = [n for n in nodes if n not in collected]
    assert nodes and not missing, f"not collected: {missing}\n{r.stdout[-2000:]}{r.stderr[-2000:]}"
