"""Where the real third-party data the evaluations read is: the copy in the tests' data (a fresh
clone has it), else ``shared/realdata`` beside the clone, else this workplace's."""
from __future__ import annotations

from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]


def candidates(relative: str) -> tuple[Path, ...]:
    return (_REPO / "tests" / "data" / "realdata" / relative, _REPO.parent / "shared" / "realdata" / relative,
            Path("/work/shared/realdata") / relative)


def realdata_file(relative: str) -> Path:
    """``relative`` (e.g. ``graphs/snap_CollegeMsg.txt``) in the first place that has it."""
    for p in candidates(relative):
        if p.is_file():
            return p
    raise FileNotFoundError(f"{relative} not found in any of: " + ", ".join(map(str, candidates(relative))))
