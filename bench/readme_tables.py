"""`python -m bench readme-tables [DATA_DIR]`: regenerate README.md's detector table (from
detectors/*.yaml) and its measured-ratio table (a fresh `python -m bench codecs` run on the real
files), between their markers."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from bench import codecs

README = Path(__file__).resolve().parents[1] / "README.md"
DETECTORS = Path(__file__).resolve().parents[1] / "detectors"
AT_REST = {"copy": "`copy` (byte-exact, optionally `.zst`)", "zarr": "OME-Zarr 0.5", "tiff": "TIFF"}


def _codec(spec: dict[str, Any] | None, layout: str) -> str:
    from acqd.codec import LAYOUT_CODECS, codec_label, frame_codec

    if layout == "copy":
        return "zstd stream (optional)"
    return codec_label(frame_codec(spec if spec is not None else LAYOUT_CODECS[layout]))


def detector_table() -> str:
    from acqd.codec import codec_label
    from acqd.profiles import load_profile

    lines = [
        "| profile | frame files (modes) | reader | at rest | codec: the profile's, and the candidates tried "
        "| CPU budget | other files |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in sorted(p.stem for p in DETECTORS.glob("*.yaml")):
        p = load_profile(name, [DETECTORS])
        modes = "; ".join(
            f"{m}{' ' if m else ''}{d or 'any'}{f' {s[0]}x{s[1]}' if s else ''}" for m, d, s in p.expect.mode_list()
        )
        files = "everything" if p.files == ("*",) else ", ".join(f"`{f}`" for f in p.files)
        if p.layout == "copy":
            codec, budget = _codec(None, "copy"), ""
        else:
            tried, ns, _ = p.codec_choice(p.layout, cores=1)
            codec = f"{codec_label(tried[0])}; tries {', '.join(codec_label(c) for c in tried[1:]) or 'nothing else'}"
            budget = (
                f"{ns:.2f} ns/B per core"
                if p.codec_budget
                else (f"peak {p.peak_rate / 1e9:.2f} GB/s" if p.peak_rate else f"{ns:.0f} ns/B (default)")
            )
        other = "" if p.layout == "copy" else p.other_files
        lines.append(
            f"| `{name}` | {files}{f' ({modes})' if modes else ''} | {p.reader} | {AT_REST[p.layout]} | {codec} "
            f"| {budget} | {other} |"
        )
    return "\n".join(lines) + "\n"


def replace_between(text: str, name: str, body: str) -> str:
    begin, end = f"<!-- BEGIN {name} (python -m bench readme-tables) -->", f"<!-- END {name} -->"
    pat = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pat.search(text):
        raise SystemExit(f"README.md has no {begin} ... {end} markers")
    return pat.sub(lambda _: f"{begin}\n{body}{end}", text)


def main(argv: list[str]) -> None:
    data = Path(argv[0]) if argv else codecs.DATA
    rows = codecs.run(data)
    text = README.read_text()
    text = replace_between(text, "detectors", detector_table())
    text = replace_between(text, "measured", codecs.table(rows))
    README.write_text(text)
    print(f"README.md: detector table ({len(list(DETECTORS.glob('*.yaml')))} profiles) and {len(rows)} measured files")
    if not rows:
        print(f"no real files found in {data}", file=sys.stderr)
