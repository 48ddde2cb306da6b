"""What a phase notebook shows: tables, the verdict line, refusals and pictures.

Computing and showing are apart: the library's results are DataFrames and dicts; this module
turns them into what a person reads in JupyterLab and in the run's HTML report.

- :func:`table` shows a frame whole: every statement wrapped (never cut), the columns that
  decide go/no-go first, in one order for each kind of table (the preview's statements and the
  apply's steps alike), every row up to a stated limit with the total, human labels (``CASCADE``,
  not ``c``; ``yes``/``no``) and one mark for an empty cell (``—``, never ``NaN`` beside ``None``).
- :func:`verdict` is the one bold line a notebook ends with: GO, NO-GO or DONE, and why, from the
  phase's recorded results (``ctx.finish()`` shows it).
- :func:`refusal` is how fkrunbook's own errors look in a notebook: one line saying what to do in
  notebook terms (which notebook to run, which parameter to set), the traceback folded away.
- :func:`orphan_chart` and :func:`apply_timeline` draw inline SVG: a static picture inside the
  notebook and its HTML report, no script, no image file, the same bytes for the same results.

Every object here has an HTML (or SVG) form and a plain-text form, so a report, a terminal and
papermill's output notebook all hold something readable.
"""
from __future__ import annotations

import html
import json
import math
import re
import traceback as tb_module
from dataclasses import dataclass

import pandas as pd

DEFAULT_LIMIT = 200     # rows a table shows before it says "showing N of M rows"
BLANK = "—"             # the one mark for an empty cell

# The order of each kind of table: the columns that decide go/no-go first, then what identifies
# the row, then the detail. The first entry whose ``needs`` the frame has applies; columns of the
# frame not listed follow in their own order.
ORDERS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("attempts", ("outcome", "waited_s"), ("outcome", "waited_s", "attempt", "statement", "blockers")),
    ("lint", ("rule", "level"), ("level", "rule", "message", "order", "file", "statement")),
    ("statements", ("statement",), ("order", "action", "blocks_writes", "attempts", "seconds", "statement", "locks",
                                    "transaction", "column", "file", "reason")),
    ("orphans", ("orphan_rows",), ("orphan_rows", "orphan_streams", "column", "kind", "action")),
    ("cleanup", ("column", "action", "rows"), ("rows", "action", "column")),
    ("verification", ("ok", "constraint"), ("ok", "column", "constraint", "exists", "validated", "on_delete",
                                            "expected_on_delete", "information_schema_delete_rule",
                                            "covering_index")),
    ("cascade", ("cascaded",), ("cascaded", "column", "on_delete", "organization_deleted", "test_row")),
    ("counts", ("before", "after"), ("table", "before", "after")),
    ("files", ("file", "state"), ("state", "file", "version", "runbook")),
]

ON_DELETE_COLUMNS = {"on_delete", "expected_on_delete", "information_schema_delete_rule", "delete_rule", "confdeltype"}
ON_DELETE_LABELS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
CODE_COLUMNS = {"statement", "test_row"}  # shown in a fixed-width font, wrapped
WIDE_COLUMNS = {"value", "message", "detail", "reason", "blockers"}  # prose or JSON: wider than a label


# -- tables ------------------------------------------------------------------------------------------
def order_columns(frame: pd.DataFrame) -> list[str]:
    """The frame's columns in the order its kind of table shows them (see :data:`ORDERS`)."""
    columns = [str(c) for c in frame.columns]
    for _, needs, order in ORDERS:
        if set(needs) <= set(columns):
            lead = [c for c in order if c in columns]
            return lead + [c for c in columns if c not in lead]
    return columns


def label(value, column: str = "") -> str:
    """One cell as a person reads it: ON DELETE actions by name, booleans as yes/no, empty as —."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return BLANK
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "yes" if value else "no"
    if column in ON_DELETE_COLUMNS and isinstance(value, str):
        return ON_DELETE_LABELS.get(value, value.upper()) if value else BLANK
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int) or type(value).__name__.startswith("int"):
        return f"{int(value):,}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str, ensure_ascii=False)
    text = str(value)
    return text if text.strip() else BLANK


def heading(column: str) -> str:
    return str(column).replace("_", " ")


@dataclass
class Table:
    """A frame as a notebook shows it (see :func:`table`)."""
    frame: pd.DataFrame
    title: str = ""
    limit: int = DEFAULT_LIMIT
    empty: str = "none"
    of: int | None = None      # the frame is a sample of this many rows

    @property
    def columns(self) -> list[str]:
        return order_columns(self.frame)

    @property
    def total(self) -> int:
        return len(self.frame) if self.of is None else max(self.of, len(self.frame))

    @property
    def shown(self) -> int:
        return min(len(self.frame), self.limit)

    @property
    def caption(self) -> str:
        rows = "row" if self.total == 1 else "rows"
        count = (f"showing {self.shown:,} of {self.total:,} {rows}" if self.shown < self.total
                 else f"{self.total:,} {rows}")
        return f"{self.title}: {count}" if self.title else count

    def rows(self) -> list[list[str]]:
        head = self.frame.iloc[: self.limit]
        return [[label(value, column) for column, value in zip(self.columns, record)]
                for record in head[self.columns].itertuples(index=False, name=None)]

    def _repr_html_(self) -> str:
        caption = f'<p style="margin:0.3em 0"><b>{html.escape(self.caption)}</b></p>'
        if not len(self.frame):
            return caption + f"<p><i>{html.escape(self.empty)}</i></p>"
        numeric = {c for c in self.columns if pd.api.types.is_numeric_dtype(self.frame[c])
                   and not pd.api.types.is_bool_dtype(self.frame[c])}
        cell = "padding:0.25em 0.45em;vertical-align:top;border-bottom:1px solid #ddd;white-space:pre-wrap;"
        head = "".join(f'<th style="{cell}text-align:left;font-weight:bold">{html.escape(heading(c))}</th>'
                       for c in self.columns)
        body = []
        for row in self.rows():
            tds = []
            for column, text in zip(self.columns, row):
                style = cell + ("text-align:right;" if column in numeric else "text-align:left;")
                shown = html.escape(text)
                if column in CODE_COLUMNS:  # whole, wrapped: a statement reads in ~3 lines, never cut
                    style += "font-family:monospace;overflow-wrap:anywhere;min-width:20em;"
                    shown = f'<div style="max-width:30em">{shown}</div>'
                elif len(text) > 24:  # long labels wrap within a narrow column: no sideways scrolling
                    style += "overflow-wrap:anywhere;min-width:7em;"
                    shown = f'<div style="max-width:{30 if column in WIDE_COLUMNS else 13}em">{shown}</div>'
                tds.append(f'<td style="{style}">{shown}</td>')
            body.append("<tr>" + "".join(tds) + "</tr>")
        return (caption + '<table class="dataframe" style="border-collapse:collapse;table-layout:auto;font-size:0.85em">'
                f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")

    def __repr__(self) -> str:
        if not len(self.frame):
            return f"{self.caption}\n{self.empty}"
        lines = [" | ".join(heading(c) for c in self.columns)]
        lines += [" | ".join(row) for row in self.rows()]
        return self.caption + "\n" + "\n".join(lines)


def table(frame: pd.DataFrame, title: str = "", limit: int = DEFAULT_LIMIT, empty: str = "none",
          of: int | None = None) -> Table:
    """``frame`` as a notebook shows it: a named index becomes the first column; every row up to
    ``limit``, with the total in the caption (``of``: the frame is a sample of that many); whole
    cells, wrapped."""
    if frame.index.name is not None or not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index()
    return Table(frame, title, limit, empty, of)


class Tables:
    """Several tables, each under its own caption (a clean-up's rows per column, say)."""

    def __init__(self, frames: dict[str, pd.DataFrame], limit: int, empty: str, totals: dict | None = None):
        totals = totals or {}
        self.tables = [table(frame, title, limit, empty, totals.get(title)) for title, frame in frames.items()]

    def _repr_html_(self) -> str:
        return "".join(t._repr_html_() for t in self.tables) or "<p><i>no table</i></p>"

    def __repr__(self) -> str:
        return "\n\n".join(repr(t) for t in self.tables)


def tables(frames: dict[str, pd.DataFrame], limit: int = DEFAULT_LIMIT, empty: str = "none") -> Tables:
    """Each frame under its title, every row up to ``limit`` with the total."""
    return Tables(frames, limit, empty)


def orphan_samples(report) -> Tables:
    """The orphan check's samples (an :class:`fkrunbook.orphans.OrphanReport`), each captioned
    with how many there are in all: ``showing 5 of 203 rows`` (orphan streams: of the streams)."""
    totals = {}
    for row in report.summary.itertuples(index=False):
        count = row.orphan_rows if row.kind == "foreign key" else row.orphan_streams
        if count is not None and not pd.isna(count):
            totals[row.column] = int(count)
    return Tables(report.samples, DEFAULT_LIMIT, "none", totals)


# -- the verdict -------------------------------------------------------------------------------------
COLOURS = {"GO": "#1a7f37", "NO-GO": "#cf222e", "DONE": "#0969da"}


@dataclass(frozen=True)
class Verdict:
    """The one line a notebook ends with: GO, NO-GO or DONE, and the reason."""
    outcome: str
    reason: str

    @property
    def line(self) -> str:
        return f"{self.outcome}: {self.reason}"

    @property
    def markdown(self) -> str:
        return f"**{self.outcome}: {self.reason}**"

    def _repr_html_(self) -> str:
        colour = COLOURS.get(self.outcome, "#57606a")
        return (f'<p style="font-size:1.25em;font-weight:bold;border-left:0.35em solid {colour};'
                f'padding:0.3em 0.6em;margin:0.5em 0"><span style="color:{colour}">{html.escape(self.outcome)}</span>: '
                f"{_inline_code(self.reason)}</p>")

    def _repr_markdown_(self) -> str:
        return self.markdown

    def __repr__(self) -> str:
        return self.line


class Closing:
    """A notebook's last output: the verdict line, then where the evidence is (Markdown)."""

    def __init__(self, verdict: Verdict, note: str):
        self.verdict, self.note = verdict, note

    def _repr_html_(self) -> str:
        return self.verdict._repr_html_() + f'<p style="margin:0.2em 0">{_inline_code(self.note.replace("**", ""))}</p>'

    def _repr_markdown_(self) -> str:
        return f"{self.verdict.markdown}\n\n{self.note.replace('**', '')}"

    def __repr__(self) -> str:
        return f"{self.verdict.line}\n{self.note.replace('**', '')}"

    def bundle(self) -> dict:
        """The mime bundle IPython would display for it."""
        return {"text/html": self._repr_html_(), "text/markdown": self._repr_markdown_(), "text/plain": repr(self)}


def _inline_code(text: str) -> str:
    """Escape ``text`` for HTML, rendering its `backticked` parts as code."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def verdict(phase: str, results: dict) -> Verdict:
    """The phase's verdict from what it recorded (its ``*.results.json``)."""
    return _VERDICTS.get(phase, _recorded)(results)


def _orphan_check(r: dict) -> Verdict:
    orphans = dict(sorted(((k, v) for k, v in (r.get("orphans") or {}).items() if v), key=lambda kv: (-kv[1], kv[0])))
    warn = f" ({_count(len(r.get('warnings') or []), 'warning')} above)" if r.get("warnings") else ""
    if not orphans:
        return Verdict("GO", f"no orphan rows in the foreign-key columns; the keys can be added{warn}; next: "
                             "03_migration_preview")
    return Verdict("NO-GO", f"{_count(sum(orphans.values()), 'orphan row')} in "
                            f"{', '.join(f'{k} ({v:,})' for k, v in orphans.items())}{warn}; next: 02_orphan_cleanup "
                            "(dry run, then confirm = True)")


def _orphan_cleanup(r: dict) -> Verdict:
    total = sum((r.get("rows") or {}).values())
    if r.get("confirmed"):
        return Verdict("DONE", f"{_count(total, 'orphan row')} cleaned up, each kept in fkrunbook_quarantine.orphan_rows "
                               "and this run's quarantine folder; next: 03_migration_preview")
    if not total:
        return Verdict("GO", "no orphan row to clean up (dry run, nothing changed); next: 03_migration_preview")
    return Verdict("NO-GO", f"{_count(total, 'orphan row')} would be cleaned up (dry run, nothing changed); review "
                            "every row above, then set confirm = True and run this notebook again (on a protected "
                            f"environment also approve = \"{r.get('cleanup_hash', '')}\")")


def _migration_preview(r: dict) -> Verdict:
    orphans = sum((r.get("orphans") or {}).values())
    if orphans:
        return Verdict("NO-GO", f"{_count(orphans, 'orphan row')} in the foreign-key columns: apply would refuse; "
                                "run 02_orphan_cleanup first")
    if not r.get("statements_to_run"):
        return Verdict("DONE", "nothing to apply: every index and key is in place")
    return Verdict("GO", f"{_count(r['statements_to_run'], 'statement')} to run, none blocking writes for more than "
                         f"an instant; next: 04_apply (on a protected environment with approve = "
                         f"\"{r.get('plan_hash', '')}\")")


def _apply(r: dict) -> Verdict:
    retries = r.get("lock_retries", 0)
    verified = r.get("verified") or []
    return Verdict("DONE", f"{_count(r.get('statements_applied', 0), 'statement')} applied "
                           f"({_count(retries, 'lock retry', 'lock retries')}); "
                           f"{_count(len(verified), 'key')} verified: validated, ON DELETE as specified, indexed; "
                           f"plan hash `{r.get('plan_hash', '')[:12]}`; next: 05_cascade_validation")


def _cascade_validation(r: dict) -> Verdict:
    keys = r.get("foreign_keys") or {}
    radius = r.get("blast_radius") or {}
    if not r.get("passed") or not r.get("counts_match", True):
        return Verdict("NO-GO", "a foreign key did not do its ON DELETE action, or rows were left behind; see the "
                                "tables above")
    blast = ""
    if radius.get("blocked"):
        blast = "; a hard delete of the blast-radius organization would be blocked (see above)"
    elif radius.get("organization"):
        blast = f"; a hard delete of the blast-radius organization would remove {radius.get('rows_deleted', 0):,} row(s)"
    return Verdict("GO", f"every foreign key did its ON DELETE action ({len(keys)} of {len(keys)}); row counts "
                         f"unchanged after the rollback{blast}; next: 06_docs_update")


def _docs_update(r: dict) -> Verdict:
    changed = r.get("files_changed", 0)
    stale = f"; {_count(r['stale_lines'], 'stale line')} to review" if r.get("stale_lines") else ""
    if r.get("written"):
        return Verdict("DONE", f"{_count(changed, 'doc file')} written; commit them with the migration{stale}")
    if not changed:
        return Verdict("DONE", f"the docs match the database; nothing to write{stale}")
    return Verdict("GO", f"{_count(changed, 'doc file')} would change; review the diff, then set write = True and run "
                         f"this notebook again{stale}")


def _recorded(r: dict) -> Verdict:
    return Verdict("DONE", "results recorded" if r else "nothing recorded (ctx.record was not called)")


_VERDICTS = {"orphan_check": _orphan_check, "orphan_cleanup": _orphan_cleanup,
             "migration_preview": _migration_preview, "apply": _apply,
             "cascade_validation": _cascade_validation, "docs_update": _docs_update}


# -- refusals ----------------------------------------------------------------------------------------
def in_notebook_terms(message: str) -> str:
    """A library message (written for the CLI) as a notebook user acts on it: phases by their
    notebook, flags by their parameter (``--confirm`` -> ``confirm = True``), ``fkrunbook run
    --env E --phase P`` by the notebook with ``env = "E"``."""
    from .phase import PHASES, phase_parameters

    stem = {name: p.notebook.removesuffix(".ipynb") for name, p in PHASES.items()}

    def command(match: re.Match) -> str:
        env, phase = match.group(1), match.group(2)
        return f'{stem.get(phase, phase)} (env = "{env}")'

    text = re.sub(r"`?fkrunbook run --env (\S+) --phase (\w+)`?", command, message)
    for parameter, _ in phase_parameters().values():
        shown = f"{parameter.name} = True" if parameter.type is bool else f"{parameter.name} = "
        if parameter.type is bool:
            text = re.sub(rf"{re.escape(parameter.option)}\b", shown, text)
        else:
            text = re.sub(rf"{re.escape(parameter.option)} ([A-Z_]+|\S+)", lambda m: f'{shown}"{m.group(1)}"', text)
            text = re.sub(rf"{re.escape(parameter.option)}\b", parameter.name, text)
    for name, notebook in stem.items():
        if name != "apply":  # an ordinary word too: only where it names the phase
            text = re.sub(rf"(?<![\w.]){name}(?![\w.])", notebook, text)
    text = re.sub(r"\b(run|re-run|then) apply\b", lambda m: f"{'run' if m.group(1) == 're-run' else m.group(1)} "
                  f"{stem['apply']}" + (" again" if m.group(1) == "re-run" else ""), text)
    text = re.sub(r"\bthe apply phase\b", stem["apply"], text)
    text = re.sub(r"\bthe (\d\d_\w+) and (\d\d_\w+) phases\b", r"\1 and \2", text)
    text = re.sub(r"\bthe (\d\d_\w+) phase\b", r"\1", text)
    return text.replace(" again again", " again")


def refusal_line(error: BaseException) -> str:
    """The one line a notebook shows for one of fkrunbook's errors."""
    from .errors import InteractiveChangeRefusedError

    message = str(error) if isinstance(error, InteractiveChangeRefusedError) else in_notebook_terms(str(error))
    return f"{type(error).__name__}: {message}"


class FoldedTraceback:
    """The library's traceback of a refusal, folded away (an HTML ``<details>``)."""

    def __init__(self, error: BaseException):
        self.text = _strip_ansi("".join(tb_module.format_exception(type(error), error, error.__traceback__)))

    def _repr_html_(self) -> str:
        return ('<details style="margin:0.2em 0"><summary style="cursor:pointer;color:#57606a">traceback '
                f"(folded: for fkrunbook's developers)</summary><pre>{html.escape(self.text)}</pre></details>")

    def __repr__(self) -> str:
        return "(traceback folded)"


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def handle_refusal(shell, etype, value, tb, tb_offset=None):
    """IPython's handler for fkrunbook's own errors (see :func:`register_refusals`): the traceback
    folded, then the error as one line. The error stays raised: the cell fails, Run All stops,
    papermill fails the phase, and a walkthrough records it failed."""
    from IPython.display import display

    display(FoldedTraceback(value))
    lines = list(value._render_traceback_()) if hasattr(value, "_render_traceback_") else [refusal_line(value)]
    lines[0] = refusal_line(value)
    shell._showtraceback(etype, value, lines)
    return lines


def register_refusals(shell) -> None:
    """Show fkrunbook's errors in this kernel as :func:`handle_refusal` does (once per kernel)."""
    from .errors import FkrunbookError

    if shell is None or FkrunbookError in getattr(shell, "custom_exceptions", ()):
        return
    shell.set_custom_exc((FkrunbookError,), handle_refusal)


# -- pictures ----------------------------------------------------------------------------------------
class Picture:
    """An inline SVG: shown as an image in JupyterLab, embedded as-is in the HTML report."""

    def __init__(self, svg: str, text: str):
        self.svg, self.text = svg, text

    def _repr_svg_(self) -> str:
        return self.svg

    def __repr__(self) -> str:
        return self.text


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">'
            f"<title>{_esc(title)}</title><rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>"
            + "".join(body) + "</svg>")


def orphan_chart(summary: pd.DataFrame) -> Picture:
    """A bar per column of the orphan check's summary: foreign-key columns red when they hold
    orphans (they stop apply), event streams and payload keys amber (reported, never deleted),
    a green 0 where there is none."""
    rows = list(summary[["column", "kind", "orphan_rows"]].itertuples(index=False, name=None))
    title = "Orphan rows per column"
    if not rows:
        return Picture(_svg(400, 40, ['<text x="8" y="24">no column to check</text>'], title), title + ": none")
    label_w, bar_w, row_h, top = 400, 340, 24, 34
    most = max(int(n) for _, _, n in rows) or 1
    width, height = label_w + bar_w + 90, top + row_h * len(rows) + 34
    fk_total = sum(int(n) for _, kind, n in rows if kind == "foreign key")
    body = [f'<text x="8" y="20" font-weight="bold" font-size="14">{_esc(title)} '
            f'({fk_total:,} in foreign-key columns)</text>']
    for i, (column, kind, count) in enumerate(rows):
        y, count = top + i * row_h, int(count)
        name = _tail(column, 62)
        body.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end">{_esc(name)}</text>')
        if count:
            colour = "#cf222e" if kind == "foreign key" else "#bf8700"
            w = max(2, round(bar_w * count / most))
            body.append(f'<rect x="{label_w}" y="{y + 4}" width="{w}" height="{row_h - 8}" fill="{colour}">'
                        f"<title>{_esc(column)}: {count:,} ({_esc(kind)})</title></rect>")
            body.append(f'<text x="{label_w + w + 6}" y="{y + 16}">{count:,}</text>')
        else:
            body.append(f'<text x="{label_w + 4}" y="{y + 16}" fill="#1a7f37" font-weight="bold">0</text>')
    y = top + row_h * len(rows) + 20
    body.append(_legend(8, y, [("#cf222e", "foreign-key column: stops apply until cleaned up"),
                               ("#bf8700", "event stream or payload: reported, never deleted")]))
    text = title + ": " + ", ".join(f"{c} {int(n):,}" for c, _, n in rows)
    return Picture(_svg(width, height, body, title), text)


def _legend(x: int, y: int, items: list[tuple[str, str]]) -> str:
    parts = []
    for colour, text in items:
        parts.append(f'<rect x="{x}" y="{y - 10}" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{x + 16}" y="{y}">{_esc(text)}</text>')
        x += 24 + 6 * len(text)
    return "".join(parts)


PAUSE = "#d0d7de"  # between two attempts of a statement: the runbook holds no lock


def step_kind(statement: str) -> str:
    """The kind of an apply statement (as :data:`fkrunbook.plan.LOCKS` names them)."""
    text = statement.upper()
    if text.startswith("DROP INDEX"):
        return "drop_index"
    if "CREATE" in text and "INDEX" in text:
        return "index"
    if "VALIDATE CONSTRAINT" in text:
        return "validate"
    return "add"


def apply_timeline(steps: pd.DataFrame, attempts: pd.DataFrame) -> Picture:
    """The apply's statements in the order they ran, each a bar as long as it took: the lock it
    took, its attempts (a lock-timeout attempt drawn red: writers queued behind it for that
    long), and whether writers were blocked. Skipped statements are counted, not drawn."""
    from .plan import LOCKS

    ran = steps[steps["action"] == "run"] if len(steps) else steps
    skipped = len(steps) - len(ran)
    title = "Apply: the statements as they ran"
    if not len(ran):
        return Picture(_svg(560, 44, [f'<text x="8" y="26">{_esc(title)}: nothing ran '
                                      f"({skipped} statement(s) already in place)</text>"], title),
                       f"{title}: nothing ran ({skipped} already in place)")
    label_w, bar_w, row_h, top = 300, 330, 40, 34
    total = float(ran["seconds"].sum()) or 0.001
    width, height = label_w + bar_w + 400, top + row_h * len(ran) + 52
    body = [f'<text x="8" y="20" font-weight="bold" font-size="14">{_esc(title)} ({total:.3f} s in all'
            f"{f', {skipped} already in place' if skipped else ''})</text>"]
    start, lines = 0.0, []
    for i, step in enumerate(ran.itertuples(index=False)):
        kind = step_kind(step.statement)
        lock, blocks = LOCKS[kind]
        tries = attempts[attempts["statement"] == step.statement] if len(attempts) else attempts
        timeouts = tries[tries["outcome"] == "lock timeout"] if len(tries) else tries
        seconds = float(step.seconds)
        y = top + i * row_h
        x0 = label_w + bar_w * start / total
        w = max(2.0, bar_w * seconds / total)
        colour = "#bf8700" if blocks != "no" else "#1a7f37"
        what = {"drop_index": "drop INVALID index", "index": "index (CONCURRENTLY)", "add": "add key NOT VALID",
                "validate": "VALIDATE"}[kind]
        body.append(f'<text x="8" y="{y + 14}" font-weight="bold">{i + 1}. {_esc(what)}</text>'
                    f'<text x="8" y="{y + 30}" fill="#57606a">{_esc(_tail(step.column, 46))}</text>')
        retries = len(timeouts)
        body.append(f'<rect x="{x0:.1f}" y="{y + 6}" width="{w:.1f}" height="{row_h - 14}" '
                    f'fill="{PAUSE if retries else colour}"><title>{_esc(step.statement)}</title></rect>')
        if retries:  # each attempt where it ran, the pauses between them (no lock held) in grey
            waits = [(float(t.waited_s), t.outcome == "lock timeout") for t in tries.itertuples()]
            gap = max(0.0, seconds - sum(wt for wt, _ in waits)) / max(1, len(waits) - 1)
            offset = x0
            for waited, timed_out in waits:
                part = max(2.0, bar_w * waited / total)
                body.append(f'<rect x="{offset:.1f}" y="{y + 6}" width="{part:.1f}" height="{row_h - 14}" '
                            f'fill="{"#cf222e" if timed_out else colour}"/>')
                offset += part + bar_w * gap / total
        writers = ("writers blocked: no" if blocks == "no" else
                   f"writers blocked: at most {seconds:.3f} s" if not retries else
                   f"writers queued up to {float(timeouts['waited_s'].max()):.3f} s per attempt")
        note = f"{seconds:.3f} s · {_count(retries, 'retry', 'retries')} · {writers}"
        body.append(f'<text x="{label_w + bar_w + 8}" y="{y + 14}">{_esc(note)}</text>'
                    f'<text x="{label_w + bar_w + 8}" y="{y + 30}" fill="#57606a">{_esc(_tail(lock, 62))}</text>')
        lines.append(f"{i + 1}. {what} {step.column}: {note}; {lock}")
        start += seconds
    y = top + row_h * len(ran) + 12
    body.append(f'<line x1="{label_w}" y1="{y}" x2="{label_w + bar_w}" y2="{y}" stroke="#57606a"/>'
                f'<text x="{label_w}" y="{y + 14}" fill="#57606a">0 s</text>'
                f'<text x="{label_w + bar_w}" y="{y + 14}" text-anchor="end" fill="#57606a">{total:.3f} s</text>')
    legend = [("#1a7f37", "writers go on"), ("#bf8700", "writers wait (an instant)"),
              ("#cf222e", "lock timeout: writers queued, then retried")]
    if len(attempts) and (attempts["outcome"] == "lock timeout").any():
        legend.append((PAUSE, "pause between attempts: no lock held"))
    body.append(_legend(8, y + 36, legend))
    return Picture(_svg(width, height, body, title), title + "\n" + "\n".join(lines))


def _tail(text: str, n: int) -> str:
    """``text`` in at most ``n`` characters, keeping its end (a column's name, a lock's detail)."""
    return text if len(text) <= n else "…" + text[-(n - 1):]
