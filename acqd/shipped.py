"""Where the shipped detector profiles, retention policies and mail templates are.

A wheel carries them inside the package (`acqd/_shipped/`, copied there from the repository's
`detectors/` and `policies/` by setup.py's build step); a clone (an editable install) reads the
repository's own folders. `/etc/acqd/...` overrides both (see `acqd.profiles.search_path`).
"""

from __future__ import annotations

from pathlib import Path

ETC = Path("/etc/acqd")
_PACKAGE = Path(__file__).resolve().parent


def shipped(folder: str) -> Path:
    """The shipped `detectors`, `policies` or `policies/templates` folder."""
    inside = _PACKAGE / "_shipped" / folder
    if inside.is_dir():
        return inside
    return _PACKAGE.parent / folder


def policy_path(p: Path) -> Path | None:
    """A `policy:` setting as a file: the path as it is (a file there, or a name ending in .yaml), else
    the policy of that name in /etc/acqd/policies or shipped with acqd (`policy: cryoem-facility`);
    None for a name no policy has (`acqd.policy.model.policy_file` says so)."""
    if p.exists() or p.suffix in (".yaml", ".yml"):
        return p
    for d in (ETC / "policies", shipped("policies")):
        if (d / f"{p.name}.yaml").is_file():
            return d / f"{p.name}.yaml"
    return None


def policy_names() -> list[str]:
    return sorted(f.stem for f in shipped("policies").glob("*.yaml"))
