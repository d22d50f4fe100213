"""Files that hold feature values, predictions or data samples, readable by their owner only.

The prediction log, reports (the gate's hold offending rows, the monitor's feature values) and
the quarantine are written into folders of mode ``0o700`` as files of mode ``0o600``: another
account on the machine can neither list nor read them, whatever its umask. Imports nothing of
ours.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """``path`` created if missing (parents too) and made owner-only."""
    path.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):  # a folder of someone else's: left as it is
        os.chmod(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """``path`` made owner-only (read and write)."""
    os.chmod(path, FILE_MODE)
    return path
