"""SQL text built from catalog-checked, validated identifiers: always quoted, never interpolated raw."""
from __future__ import annotations

import re
from typing import Iterator


def ident(name: str) -> str:
    """Quote one identifier as PostgreSQL's quote_ident would (always quoted)."""
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{ident(schema)}.{ident(name)}"


def literal(value: str) -> str:
    """Quote a text literal (standard_conforming_strings, on since PostgreSQL 9.1)."""
    return "'" + value.replace("'", "''") + "'"


# An SQL identifier as written in a file: "quoted" (doubled quotes inside) or plain.
IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'


def unquote(name: str) -> str:
    """An SQL identifier as PostgreSQL stores it: quoted kept as written, unquoted folded to lower case."""
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


DOLLAR_QUOTE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def lex(sql: str) -> Iterator[tuple[str, int, int]]:
    """SQL text in pieces, ``(kind, start, end)``, as the Supabase CLI's parser sees it: ``quoted``
    ('...' or "..." with doubled quotes, or a $tag$ dollar quote), ``comment`` (-- to the end of the
    line, or a nested /* */), else ``code`` (one character, or a backslash with the one it escapes).
    An unterminated quote or comment runs to the end."""
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in ("'", '"'):
            end = i + 1
            while end < n and not (sql[end] == ch and not sql.startswith(ch * 2, end)):
                end += 2 if sql.startswith(ch * 2, end) else 1
            kind, end = "quoted", min(end + 1, n)
        elif ch == "$" and (match := DOLLAR_QUOTE.match(sql, i)):
            close = sql.find(match.group(0), match.end())
            kind, end = "quoted", n if close < 0 else close + len(match.group(0))
        elif sql.startswith("--", i):
            close = sql.find("\n", i)
            kind, end = "comment", n if close < 0 else close
        elif sql.startswith("/*", i):
            level, end = 1, i + 2
            while end < n and level:
                step = 1 + (sql.startswith("/*", end) or sql.startswith("*/", end))
                level += sql.startswith("/*", end) - sql.startswith("*/", end)
                end += step
            kind = "comment"
        else:
            kind, end = "code", min(i + (2 if ch == "\\" else 1), n)
        yield kind, i, end
        i = end


def depth_split(sql: str, separator: str) -> list[str]:
    """``sql`` split on ``separator`` where it stands outside quotes, comments and parentheses."""
    parts, depth, start = [], 0, 0
    for kind, i, end in lex(sql):
        if kind != "code":
            continue
        ch = sql[i]
        depth += (ch == "(") - (ch == ")" and depth > 0)
        if ch == separator and depth == 0:
            parts.append(sql[start:end])
            start = end
    parts.append(sql[start:])
    return parts
