"""The Supabase CLI's migration history, kept exactly as the CLI keeps it.

``supabase db push`` runs each migration file in one transaction together with an INSERT into
``supabase_migrations.schema_migrations(version, name, statements)``, where ``statements`` is
the file split the way the CLI's parser splits it (pkg/parser: on ';' outside quotes, dollar
quotes, comments and parentheses; each piece trimmed of the ';' and surrounding whitespace;
empty pieces dropped). The runbook records the files it applies the same way, so the team's
own ``supabase migration list`` and ``db push`` agree with it afterwards.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .sqltext import depth_split

FILE_PATTERN = re.compile(r"^([0-9]+)_(.*)\.sql$")

# The CLI's own statements (pkg/migration/history.go), run before recording history.
CREATE_HISTORY = (
    "CREATE SCHEMA IF NOT EXISTS supabase_migrations",
    "CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (version text NOT NULL PRIMARY KEY)",
    "ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[]",
    "ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text",
)
INSERT_HISTORY = "INSERT INTO supabase_migrations.schema_migrations(version, name, statements) VALUES (%s, %s, %s)"
LIST_VERSIONS = "SELECT version FROM supabase_migrations.schema_migrations ORDER BY version"


@dataclass(frozen=True)
class MigrationFile:
    version: str
    name: str
    path: Path

    @property
    def filename(self) -> str:
        return self.path.name

    def statements(self) -> list[str]:
        return split_statements(self.path.read_text())


def list_local(directory: str | Path) -> list[MigrationFile]:
    """Migration files in the folder, in version order, as the CLI sees them (others are ignored)."""
    files = []
    for path in sorted(Path(directory).glob("*.sql")):
        match = FILE_PATTERN.match(path.name)
        if match:
            files.append(MigrationFile(match.group(1), match.group(2), path))
    return files


def list_remote(conn) -> list[str]:
    """Versions recorded in the database (a psycopg connection); empty when the table is absent."""
    exists = conn.execute("SELECT to_regclass('supabase_migrations.schema_migrations') IS NOT NULL").fetchone()[0]
    if not exists:
        return []
    return [row[0] for row in conn.execute(LIST_VERSIONS)]


def ensure_history_table(conn) -> None:
    for statement in CREATE_HISTORY:
        conn.execute(statement)


def record(conn, migration: MigrationFile, statements: list[str]) -> None:
    conn.execute(INSERT_HISTORY, (migration.version, migration.name, statements))


def split_statements(sql: str) -> list[str]:
    """Split SQL into statements as the Supabase CLI's parser does.

    A ';' ends a statement unless it is inside '...' or "..." (doubled quotes escape), a
    $tag$...$tag$ dollar quote, a -- line comment, a nested /* */ block comment, or parentheses;
    a backslash outside quotes escapes the next character. Each statement keeps any comment
    that precedes it; the trailing ';'s and surrounding whitespace are trimmed; empty ones dropped.
    (BEGIN ATOMIC bodies are not handled: the runbook's migrations never contain them.)
    """
    return [s for s in (piece.rstrip(";").strip() for piece in depth_split(sql, ";")) if s]
