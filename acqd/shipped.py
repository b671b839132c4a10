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
