"""Files that ship inside the package: the phase notebooks and the runbook files ``init`` writes.

The top-level ``notebooks/`` and ``runbooks/`` folders of fkrunbook's repository are their source;
a wheel carries copies in ``fkrunbook/notebooks/`` and ``fkrunbook/runbooks/`` (setup.py copies
them at build time). A checkout or an editable install has no copy and uses the source folders.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
SOURCE = PACKAGE.parent.parent   # the repository, when running from a checkout


def _shipped(folder: str) -> Path:
    shipped = PACKAGE / folder
    return shipped if shipped.is_dir() else SOURCE / folder


def notebooks_dir() -> Path:
    return _shipped("notebooks")


def runbook_file(name: str) -> Path:
    return _shipped("runbooks") / name
