"""Compare two run directories of the same config: every Markdown table (``report.md`` included)
byte for byte, every JSON record with times and fingerprints left out (a fingerprint holds the
training stamps of the models, times included), and every model's weights byte for byte.

    python scripts/compare_runs.py RUN_DIR_A RUN_DIR_B

Exit status 0 when everything is the same, 1 otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LEFT_OUT = {"seconds", "fingerprint", "decision_ms_per_question", "hash", "inputs"}
"""Record keys that differ between two identical runs: wall times, and the fingerprints, the pool's
hash and the pool's recorded inputs, which are made of the models' training stamps (times included)."""


def strip(value):
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in LEFT_OUT}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def same(a: Path, b: Path) -> bool:
    if a.suffix == ".json":
        return strip(json.loads(a.read_text())) == strip(json.loads(b.read_text()))
    return a.read_bytes() == b.read_bytes()


def main(first: str, second: str) -> int:
    a, b = Path(first), Path(second)
    compared = differ = 0
    for path in sorted(a.rglob("*")):
        rel = path.relative_to(a)
        if rel.parts[0] == "wandb" or not path.is_file() or path.suffix not in (".md", ".json", ".safetensors"):
            continue
        other = b / rel
        ok = other.is_file() and same(path, other)
        compared += 1
        differ += not ok
        if not ok:
            print(f"differs: {rel}")
    print(f"{compared} files compared, {compared - differ} the same, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
