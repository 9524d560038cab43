"""SQL helpers of libs.store: statement splitting, migrations discovery, URL parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.store import StoreError
from libs.store.server import parse_url
from libs.store.sql import (
    MIGRATIONS_DIR,
    discover_migrations,
    format_params,
    quote_string,
    split_statements,
    with_db,
)


def test_split_statements_ignores_semicolons_in_quotes_and_comments() -> None:
    script = """
    -- a comment; with a semicolon
    CREATE TABLE a (s String DEFAULT 'x;y') ENGINE = Memory;
    /* block; comment */ SELECT 'it''s;', "we;ird", `id;`, 'esc\\';';
    ;
    """
    assert split_statements(script) == [
        "CREATE TABLE a (s String DEFAULT 'x;y') ENGINE = Memory",
        "SELECT 'it''s;', \"we;ird\", `id;`, 'esc\\';'",
    ]


def test_split_statements_rejects_an_unterminated_quote() -> None:
    with pytest.raises(ValueError, match="unterminated"):
        split_statements("SELECT 'oops")


def test_with_db_leaves_parameters_alone() -> None:
    assert with_db("SELECT {x:String} FROM {db}.t", "mt") == "SELECT {x:String} FROM mt.t"


def test_quote_string_escapes() -> None:
    assert quote_string("a'b\\c") == "'a\\'b\\\\c'"


def test_format_params_uses_clickhouse_text_forms() -> None:
    assert format_params({"s": "a'b", "n": None, "l": ["x", "y'"], "i": 3}) == {
        "s": "a\\'b",
        "n": "\\N",
        "l": "['x', 'y\\'']",
        "i": "3",
    }


def test_shipped_migrations_are_numbered_and_start_at_one() -> None:
    found = discover_migrations(MIGRATIONS_DIR)
    assert found[0].label == "0001_init"
    assert [m.version for m in found] == sorted(m.version for m in found)


def test_discover_migrations_rejects_bad_names_and_duplicates(tmp_path: Path) -> None:
    (tmp_path / "1_init.sql").write_text("SELECT 1")
    with pytest.raises(ValueError, match=r"1_init\.sql"):
        discover_migrations(tmp_path)
    (tmp_path / "1_init.sql").unlink()
    (tmp_path / "0001_a.sql").write_text("SELECT 1")
    (tmp_path / "0001_b.sql").write_text("SELECT 1")
    with pytest.raises(ValueError, match="share version 1"):
        discover_migrations(tmp_path)


def test_parse_url() -> None:
    a = parse_url("http://user:p%40ss@ch.local:8124/prod")
    assert (a.host, a.port, a.username, a.password, a.secure, a.database) == (
        "ch.local",
        8124,
        "user",
        "p@ss",
        False,
        "prod",
    )
    b = parse_url("https://ch.example.com")
    assert (b.port, b.secure, b.database, b.username) == (8443, True, None, None)
    assert "p@ss" not in a.display


def test_parse_url_rejects_other_schemes_without_echoing_the_password() -> None:
    with pytest.raises(StoreError, match="http") as info:
        parse_url("tcp://user:secret@host:9000/db")
    assert "secret" not in str(info.value)
