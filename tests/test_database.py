import pytest
import sqlalchemy.exc
from sqlalchemy import text


def test_describe_shows_environment_and_server_without_url(database):
    db = database.connect()
    frame = db.describe()
    assert frame.loc["environment", "value"] == "test"
    assert frame.loc["database", "value"] == database.name
    assert "postgresql://" not in frame.to_string()


def test_read_only_transaction_refuses_a_write(database):
    db = database.connect()
    with pytest.raises(sqlalchemy.exc.InternalError, match="read-only transaction"):
        with db.read_only() as conn:
            conn.execute(text("DELETE FROM organizations_projection"))
    assert database.sql("SELECT count(*) FROM organizations_projection")[0][0] > 0


def test_read_only_raw_connection_refuses_a_write(database):
    db = database.connect()
    import psycopg

    with db.connect_raw(read_only=True) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM organizations_projection")
