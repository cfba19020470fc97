"""Making a file's existence durable, for the append-only logs beside the state (the gateway's
inbox, the evidence log): an fsync of the file makes its bytes durable, not its name in the
directory — a new file needs its directory synced too before anything in it is acknowledged."""
from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Sync ``directory``: the names of the files created in it survive a crash."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
