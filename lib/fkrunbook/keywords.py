"""The keyword index (a team's AGENT-INDEX.md): rows added or updated in the index's own style.

The index is a markdown table somewhere in the file (its header need not be fkrunbook's own);
fkrunbook keeps one row per document it maintains, keyed by the first cell, written with the link
style the index's rows already use (markdown link or bare path, backticks, ``./``, the link text)
and paths relative to the index's folder. Other rows and all other text are kept as they are.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

DOC_COLUMN = re.compile(r"doc|file|link|path|page|location|reference|see", re.I)
TOPIC_COLUMN = re.compile(r"topic|descr|summary|cover|content|about|purpose|what|note|tag", re.I)
MD_LINK = re.compile(r"^(`?)\[(`?)([^\]]*?)\2\]\(<?([^)\s>]+)>?\)\1$")
BARE_PATH = re.compile(r"^(`?)([^\s`|\[\]()]+\.md(?:#\S*)?)\1$")
DEFAULT_HEADER = ["Keyword", "Document", "Topics"]


@dataclass(frozen=True)
class IndexEntry:
    """One row fkrunbook keeps in the keyword index."""
    key: str
    path: Path          # the document it points at
    title: str
    topics: str


@dataclass(frozen=True)
class LinkStyle:
    """How an index's rows write a link to a document: ``[text](path)`` or a bare path, either
    possibly in backticks; the link text is the path, the file name, its stem or a title."""
    markdown: bool = True
    code: bool = False          # the whole link (or path) in backticks
    code_text: bool = False     # [`text`](path)
    text: str = "name"          # path | name | stem | title
    dot: bool = False           # ./path

    def render(self, path: str, title: str) -> str:
        target = "./" + path if self.dot and not path.startswith(".") else path
        out = target
        if self.markdown:
            name = path.rsplit("/", 1)[-1]
            label = {"path": target, "name": name, "stem": name.rsplit(".", 1)[0]}.get(self.text, title)
            out = f"[{'`' + label + '`' if self.code_text else label}]({target})"
        return f"`{out}`" if self.code else out


def detect_link_style(cells: list[str]) -> LinkStyle:
    """The most common way the given document cells write their link (markdown links if none says)."""
    styles = []
    for cell in cells:
        if m := MD_LINK.match(cell.strip()):
            target = m[4].split("#")[0]
            name = target.rsplit("/", 1)[-1]
            kind = ("path" if m[3] in (m[4], target, target.removeprefix("./")) else "name" if m[3] == name
                    else "stem" if m[3] == name.rsplit(".", 1)[0] else "title")
            styles.append(LinkStyle(True, bool(m[1]), bool(m[2]), kind, target.startswith("./")))
        elif m := BARE_PATH.match(cell.strip()):
            styles.append(LinkStyle(False, bool(m[1]), False, "path", m[2].startswith("./")))
    return Counter(styles).most_common(1)[0][0] if styles else LinkStyle()


def merge_keyword_rows(existing: str | None, entries: list[IndexEntry], folder: Path) -> str:
    """Add fkrunbook's rows to the index's keyword table, in its columns and link style, with paths
    relative to ``folder`` (the index's). A row keyed like an entry is replaced unless it already
    points at the entry's document; an entry whose document some line already links to is left out.
    Every other byte is kept."""
    text = existing if existing is not None else "# Agent index\n"
    lines = text.splitlines(keepends=True)
    at = _keyword_table(lines)
    if at is None:
        if lines and not _eol(lines[-1]):
            lines[-1] += "\n"
        lines += ["\n", _row(DEFAULT_HEADER, "\n"), _row(["---"] * len(DEFAULT_HEADER), "\n")]
        at = len(lines) - 2
    header, eol = _cells(lines[at]), _eol(lines[at]) or "\n"
    end = at + 2
    while end < len(lines) and lines[end].lstrip().startswith("|"):
        end += 1
    rows = lines[at + 2:end]
    if rows and not _eol(rows[-1]):
        rows[-1] += eol
    key_col, doc_col, topic_col = _roles(header)
    style = detect_link_style([_cell(r, doc_col) for r in rows])
    key_cells = [_cell(r, key_col) for r in rows]
    code_keys = not rows or sum(bool(re.fullmatch(r"`[^`]+`", c)) for c in key_cells) * 2 >= len(rows)
    for entry in entries:
        cells = [""] * len(header)
        cells[key_col] = f"`{entry.key}`" if code_keys else entry.key
        cells[doc_col] = style.render(Path(os.path.relpath(entry.path, folder)).as_posix(), entry.title)
        if topic_col is not None:
            cells[topic_col] = entry.topics
        keyed = next((i for i, r in enumerate(rows) if _cell(r, key_col).strip("`").strip().lower() == entry.key.lower()),
                     None)
        if keyed is not None:
            if not _links_to(rows[keyed], entry.path, folder):
                rows[keyed] = _row(cells, eol)
        elif not any(_links_to(line, entry.path, folder) for line in lines):
            rows.append(_row(cells, eol))
    return "".join(lines[:at + 2] + rows + lines[end:])


def _keyword_table(lines: list[str]) -> int | None:
    """The line of the keyword table's header: one naming a keyword column, else one naming a
    document column; None when the index has neither."""
    headers = [i for i in range(len(lines) - 1) if lines[i].lstrip().startswith("|") and len(_cells(lines[i])) >= 2
               and _is_separator(lines[i + 1])]
    for pattern in (re.compile("keyword", re.I), DOC_COLUMN):
        for i in headers:
            if any(pattern.search(c) for c in _cells(lines[i])):
                return i
    return None


def _roles(header: list[str]) -> tuple[int, int, int | None]:
    """Which columns hold the keyword, the document and the topics."""
    doc = next((i for i, h in enumerate(header) if DOC_COLUMN.search(h) and "keyword" not in h.lower()), 1)
    key = next((i for i, h in enumerate(header) if "keyword" in h.lower() and i != doc),
               next(i for i in range(len(header)) if i != doc))
    others = [i for i in range(len(header)) if i not in (key, doc)]
    topic = next((i for i in others if TOPIC_COLUMN.search(header[i])), others[0] if others else None)
    return key, doc, topic


def _links_to(line: str, path: Path, folder: Path) -> bool:
    """Whether a line links (markdown link or bare path, relative to ``folder``) to ``path``."""
    found = re.findall(r"\]\(<?([^)\s>]+)", line) + re.findall(r"[\w./-]+\.md\b", line)
    wanted = os.path.normpath(os.path.abspath(path))
    return any(os.path.normpath(os.path.abspath(folder / t.split("#")[0])) == wanted for t in found)


def _cells(line: str) -> list[str]:
    s = line.rstrip("\r\n").strip()
    s = s[1:] if s.startswith("|") else s
    s = s[:-1] if s.endswith("|") and not s.endswith("\\|") else s
    return [c.strip() for c in re.split(r"(?<!\\)\|", s)]


def _cell(row: str, i: int) -> str:
    cells = _cells(row)
    return cells[i] if i < len(cells) else ""


def _row(cells: list[str], eol: str) -> str:
    return "| " + " | ".join(cells) + " |" + eol


def _is_separator(line: str) -> bool:
    s = line.strip()
    return s.startswith("|") and "-" in s and set(s) <= set("|:- ")


def _eol(line: str) -> str:
    return line[len(line.rstrip("\r\n")):]


def escape_cell(value: str) -> str:
    return value.replace("|", "\\|")
