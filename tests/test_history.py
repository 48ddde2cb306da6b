import pytest

from fkrunbook.history import list_local, split_statements


@pytest.mark.parametrize("sql, expected", [
    ("select 1; select 2;", ["select 1", "select 2"]),
    ("select 1;\n\n  ", ["select 1"]),
    ("-- lead\nselect 1;\n-- trailing comment\n", ["-- lead\nselect 1", "-- trailing comment"]),
    ("select ';' ; select 2", ["select ';'", "select 2"]),
    ("select 'it''s;' ; x", ["select 'it''s;'", "x"]),
    ('select ";" as "a;b"; y', ['select ";" as "a;b"', "y"]),
    ("do $$ begin perform 1; end $$; z", ["do $$ begin perform 1; end $$", "z"]),
    ("do $body$ a; $$ b; $body$; z", ["do $body$ a; $$ b; $body$", "z"]),
    ("select $1; z", ["select $1", "z"]),
    ("select 1 -- a; b\n; z", ["select 1 -- a; b", "z"]),
    ("select /* a; /* nested; */ b; */ 1; z", ["select /* a; /* nested; */ b; */ 1", "z"]),
    ("create rule r as on insert to t do (insert into a values (1); insert into b values (2)); z",
     ["create rule r as on insert to t do (insert into a values (1); insert into b values (2))", "z"]),
    ("select 1;;", ["select 1"]),
])
def test_split_statements_like_the_supabase_cli(sql, expected):
    assert split_statements(sql) == expected


def test_list_local_reads_cli_file_names(tmp_path):
    (tmp_path / "20260101000000_first.sql").write_text("select 1;")
    (tmp_path / "20260102000000_second_step.sql").write_text("select 2;")
    (tmp_path / "notes.sql").write_text("ignored")
    (tmp_path / "README.md").write_text("ignored")
    files = list_local(tmp_path)
    assert [(m.version, m.name) for m in files] == [("20260101000000", "first"), ("20260102000000", "second_step")]
