"""SQL text built from catalog-checked, validated identifiers: always quoted, never interpolated raw."""
from __future__ import annotations


def ident(name: str) -> str:
    """Quote one identifier as PostgreSQL's quote_ident would (always quoted)."""
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{ident(schema)}.{ident(name)}"


def literal(value: str) -> str:
    """Quote a text literal (standard_conforming_strings, on since PostgreSQL 9.1)."""
    return "'" + value.replace("'", "''") + "'"
