#!/bin/bash
# Releases over many sessions: 1,000 folders of one 2 KB file each, shipped and released by one
# `acqd run --once` (quick form). Usage: bench/sessions1000.sh [CODE_DIR] [PYTHON]
# CODE_DIR: a checkout of acqd (default: this one); PYTHON: an interpreter with acqd's dependencies.
set -eu
code=${1:-$(cd "$(dirname "$0")/.." && pwd)}
py=${2:-python3}
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
"$py" - "$w" <<'PY'
import os, sys
w = sys.argv[1]
for i in range(1000):
    d = f"{w}/acq/s{i:04d}"
    os.makedirs(d)
    with open(f"{d}/f.raw", "wb") as f:
        f.write(os.urandom(2048))
PY
start=$(date +%s.%N)
rc=0
(cd "$code" && PYTHONPATH="$code" "$py" -m acqd run --once --watch "$w/acq" --dest "$w/central" \
    --state-dir "$w/state" --settle 0.2s --release > "$w/out.txt" 2> "$w/err.txt") || rc=$?
end=$(date +%s.%N)
echo "rc=$rc wall=$(echo "$end - $start" | bc) s; $(grep -o '[0-9]* released' "$w/out.txt" | head -1);" \
    "left on the acquisition disk: $(find "$w/acq" -type f | wc -l)"
