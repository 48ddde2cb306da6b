"""Files that ship inside the package: the phase notebooks.

The top-level ``notebooks/`` folder of fkrunbook's repository is their source; a wheel carries a
copy in ``fkrunbook/notebooks/`` (setup.py copies them at build time). An editable install or a
checkout has no copy and uses the source folder itself.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def notebooks_dir() -> Path:
    shipped = PACKAGE / "notebooks"
    if shipped.is_dir():
        return shipped
    return PACKAGE.parent.parent / "notebooks"
