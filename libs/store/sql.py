"""SQL text helpers shared by both backends: identifiers, literals, parameters, migrations.

Kept free of any backend import so it can be unit-tested without a ClickHouse engine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.binding import format_bind_value

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DB_TOKENS = re.compile(
    r"'(?:[^'\\]|\\.|'')*'"  # a string literal: left as it is
    r"|--[^\n]*|/\*.*?\*/"  # comments: left as they are (an apostrophe in one opens no literal)
    r'|"(?:[^"\\]|\\.|"")*"|`(?:[^`\\]|\\.|``)*`'  # quoted identifiers: {db} filled in inside
    r"|\{db\}",
    re.DOTALL,
)
_MIGRATION = re.compile(r"^(\d{4})_([A-Za-z0-9_]+)\.sql$")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
"""Where the numbered schema files live (shipped as package data)."""


def is_identifier(name: str) -> bool:
    """True for a plain ClickHouse identifier (letters, digits, `_`), safe to splice unquoted."""
    return bool(_IDENT.match(name))


def quote_string(value: str) -> str:
    """A ClickHouse single-quoted string literal for `value` (backslash and quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def with_db(sql: str, db: str) -> str:
    """Replace the `{db}` placeholder outside string literals and comments.

    A `{db}` inside a quoted value (a symbol spliced in with `quote_string`) is data and stays
    as written; `{name:Type}` parameters are left for the engine to bind.
    """
    if "{db}" not in sql:
        return sql
    if "'" not in sql and "--" not in sql and "/*" not in sql:
        return sql.replace("{db}", db)
    return _DB_TOKENS.sub(lambda m: _fill(m.group(0), db), sql)


def _fill(token: str, db: str) -> str:
    """A token of `with_db`'s scan with `{db}` filled in, unless it is a string literal or a comment."""
    if token == "{db}":
        return db
    if token[0] in '"`':
        return token.replace("{db}", db)
    return token


def format_params(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Render parameter values as ClickHouse's text form for `{name:Type}` placeholders.

    Uses clickhouse-connect's own formatter, so chDB receives exactly what the HTTP
    interface would; values are bound by the engine, never spliced into the SQL text.
    """
    if not params:
        return {}
    return {name: format_bind_value(value, UTC) for name, value in params.items()}


def split_statements(script: str) -> list[str]:
    """Split a SQL script on `;`, ignoring those inside quotes and comments; drop comments."""
    statements: list[str] = []
    buf: list[str] = []
    i, n = 0, len(script)
    while i < n:
        ch = script[i]
        if ch in "'\"`":
            end = _end_of_quoted(script, i)
            buf.append(script[i:end])
            i = end
        elif script.startswith("--", i):
            end = script.find("\n", i)
            i = n if end < 0 else end
        elif script.startswith("/*", i):
            end = script.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch == ";":
            statements.append("".join(buf))
            buf = []
            i += 1
        else:
            buf.append(ch)
            i += 1
    statements.append("".join(buf))
    return [s.strip() for s in statements if s.strip()]


def _end_of_quoted(text: str, start: int) -> int:
    """Index just past the quoted token opening at `start` (backslash and doubled quotes escape)."""
    quote = text[start]
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
        elif ch == quote:
            if i + 1 < len(text) and text[i + 1] == quote:
                i += 2
            else:
                return i + 1
        else:
            i += 1
    raise ValueError(f"unterminated {quote} quote starting at offset {start}")


@dataclass(frozen=True)
class Migration:
    """One numbered schema file: `NNNN_name.sql`."""

    version: int
    name: str
    path: Path

    @property
    def label(self) -> str:
        """`0001_init`: how applied migrations are reported."""
        return f"{self.version:04d}_{self.name}"

    def statements(self, db: str) -> list[str]:
        """The file's statements with `{db}` filled in."""
        return split_statements(with_db(self.path.read_text(encoding="utf-8"), db))


def discover_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every `NNNN_name.sql` in `directory`, in version order; a bad name or duplicate is an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _MIGRATION.match(path.name)
        if m is None:
            raise ValueError(f"migration file {path.name!r} is not named NNNN_name.sql")
        version = int(m.group(1))
        if version in found:
            raise ValueError(f"migrations {found[version].path.name!r} and {path.name!r} share version {version}")
        found[version] = Migration(version, m.group(2), path)
    return [found[v] for v in sorted(found)]
