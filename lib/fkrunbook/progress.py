"""Progress of long apply steps, watched from a second connection, and the stop of a cancelled one.

While an index build or a VALIDATE runs, a thread polls the server from a connection of its own
(the apply's connection is busy running the statement): for ``CREATE INDEX CONCURRENTLY``,
``pg_stat_progress_create_index`` (phase, blocks and tuples done of total, the old transactions it
waits for); for ``VALIDATE CONSTRAINT``, which has no progress view, the time elapsed, the table's
size and what the backend waits on. A step shorter than one interval prints nothing and opens no
connection; a longer one prints a log line per interval and keeps each sample for the results.

:func:`stop_backend` makes sure a cancelled statement is really gone from the server: psycopg
cancels the running query when Ctrl-C interrupts it, but a backend still ``active`` afterwards is
cancelled again with ``pg_cancel_backend`` and, as a last resort, terminated.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from .database import Database

log = logging.getLogger("fkrunbook.progress")

EVERY_S = 5.0      # seconds between two samples (and log lines) of one step
STOP_WAIT_S = 5.0  # how long a cancelled backend may take to go idle before it is terminated

SAMPLE_COLUMNS = ["statement", "elapsed_s", "phase", "done", "total", "unit", "waiting_for", "table_bytes"]

_INDEX = ("SELECT p.phase, p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total, p.lockers_done, "
          "p.lockers_total, a.wait_event_type, a.wait_event FROM pg_stat_progress_create_index p "
          "JOIN pg_stat_activity a ON a.pid = p.pid WHERE p.pid = %s")
_ACTIVITY = "SELECT state, wait_event_type, wait_event FROM pg_stat_activity WHERE pid = %s"


@dataclass
class StepWatch:
    """Samples one running statement (``kind`` index or validate) of backend ``pid`` every ``every``
    seconds, on its own thread; a context manager around the statement."""
    db: Database
    statement: str
    kind: str
    table: str                      # the child table, qualified
    pid: int
    every: float = EVERY_S
    estimate_s: float | None = None
    samples: list[dict] = field(default_factory=list)

    def __post_init__(self):
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fkrunbook-progress", daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> "StepWatch":
        self._started = time.monotonic()
        if self.every > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        conn = None
        try:
            while not self._done.wait(self.every):
                if conn is None:
                    conn = self.db.connect_raw(autocommit=True)
                    self._bytes = conn.execute("SELECT pg_total_relation_size(%s::regclass)",
                                               (self.table,)).fetchone()[0]
                sample = self._sample(conn)
                if sample is None or self._done.is_set():
                    continue
                self.samples.append(sample)
                log.info("%s", describe(sample, self.estimate_s))
        except Exception as err:  # progress is a courtesy: never let it break the step it watches
            log.info("progress of %s not shown any more: %s", _short(self.statement), type(err).__name__)
        finally:
            if conn is not None:
                conn.close()

    def _sample(self, conn) -> dict | None:
        elapsed = round(time.monotonic() - self._started, 1)
        base = {"statement": self.statement, "elapsed_s": elapsed, "table_bytes": self._bytes}
        if self.kind == "index":
            row = conn.execute(_INDEX, (self.pid,)).fetchone()
            if row is not None:
                phase, blocks_done, blocks_total, tuples_done, tuples_total, lockers_done, lockers_total = row[:7]
                wtype, wait = row[7:]
                if lockers_total:
                    done, total, unit = lockers_done, lockers_total, "transactions"
                elif blocks_total:
                    done, total, unit = blocks_done, blocks_total, "blocks"
                else:
                    done, total, unit = tuples_done, tuples_total, "tuples"
                return {**base, "phase": phase, "done": done, "total": total, "unit": unit,
                        "waiting_for": f"{wtype}:{wait}" if wtype else ""}
            return None  # between attempts, or dropping an INVALID leftover: not the build itself
        row = conn.execute(_ACTIVITY, (self.pid,)).fetchone()
        if row is None or row[0] != "active":
            return None
        return {**base, "phase": "validating" if self.kind == "validate" else "running", "done": None, "total": None,
                "unit": "", "waiting_for": f"{row[1]}:{row[2]}" if row[1] else ""}


def describe(sample: dict, estimate_s: float | None = None) -> str:
    """One log line: ``CREATE INDEX ... : building index: scanning table, 1200/5000 blocks (24%), 12 s
    elapsed (estimated ~50 s), table 1.2 GB``."""
    parts = [sample["phase"]]
    if sample["total"]:
        parts.append(f"{sample['done']}/{sample['total']} {sample['unit']} "
                     f"({100 * sample['done'] / sample['total']:.0f}%)")
    parts.append(f"{sample['elapsed_s']:.0f} s elapsed" + (f" (estimated ~{format_seconds(estimate_s)})"
                                                           if estimate_s else ""))
    parts.append(f"table {format_bytes(sample['table_bytes'])}")
    if sample["waiting_for"]:
        parts.append(f"waiting on {sample['waiting_for']}")
    return f"progress of {_short(sample['statement'])}: " + ", ".join(parts)


def stop_backend(db: Database, pid: int, wait_s: float = STOP_WAIT_S) -> str:
    """Make sure backend ``pid`` runs nothing any more; return what was done, in a few words.
    Already idle (psycopg cancelled it on the interrupt): nothing. Still active: ``pg_cancel_backend``,
    then, if it is still active after ``wait_s``, ``pg_terminate_backend``."""
    with db.connect_raw(autocommit=True) as conn:
        def active() -> bool:
            row = conn.execute(_ACTIVITY, (pid,)).fetchone()
            return row is not None and row[0] == "active"

        if not active():
            return "cancelled"
        conn.execute("SELECT pg_cancel_backend(%s)", (pid,))
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not active():
                return "cancelled with pg_cancel_backend"
            time.sleep(0.1)
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and active():
            time.sleep(0.1)
        return "terminated with pg_terminate_backend" if not active() else "STILL RUNNING on the server"


def format_seconds(seconds: float) -> str:
    if seconds < 1:
        return "<1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_bytes(value: int | None) -> str:
    if value is None:
        return "?"
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024


def _short(statement: str) -> str:
    return statement if len(statement) <= 90 else statement[:87] + "..."
