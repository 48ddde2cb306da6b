"""Guards on changing a database: one operator at a time, and approvals on protected environments."""
from __future__ import annotations

import contextlib
import zlib

import psycopg

from .database import Database
from .errors import ConcurrentRunError, PlanChangedError, ProtectedEnvironmentError

LOCK_CLASS = 0x464B5242  # 'FKRB': the advisory-lock namespace of fkrunbook


def lock_key(name: str) -> tuple[int, int]:
    return LOCK_CLASS, zlib.crc32(name.encode()) & 0x7FFFFFFF


@contextlib.contextmanager
def exclusive_change(db: Database, conn: psycopg.Connection, name: str):
    """Hold a session advisory lock on ``conn`` for the change ``name``; refuse if another session has it."""
    key = lock_key(name)
    if not conn.execute("SELECT pg_try_advisory_lock(%s, %s)", key).fetchone()[0]:
        holder = conn.execute(
            "SELECT a.pid, a.usename, coalesce(nullif(a.application_name, ''), 'unknown'), "
            "to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid::bigint = %s AND l.objid::bigint = %s", key).fetchone()
        described = (f"pid {holder[0]}, user {holder[1]}, {holder[2]}, connected since {holder[3]} UTC"
                     if holder else "a session that has just ended")
        raise ConcurrentRunError(db.env.name, described)
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", key)


def require_approval(db: Database, action: str, phase: str, current_hash: str, approved: str | None) -> None:
    """On a protected environment, the change runs only if ``approved`` is the hash of the plan now.
    Elsewhere an approval, when given, must match too."""
    if db.env.protected and approved != current_hash:
        raise ProtectedEnvironmentError(db.env.name, action, phase=phase, current_hash=current_hash,
                                        approved=approved or None)
    if approved and approved != current_hash:
        raise PlanChangedError(f"the {action} plan changed since it was previewed (hash {current_hash[:12]}, "
                               f"previewed {approved[:12]}); run {phase} again and review it")
