import pytest

from fkrunbook.environment import get_environment, load_environments
from fkrunbook.errors import ConnectionFailedError, EnvironmentConfigError, EnvironmentUnknownError

from .conftest import PROJECT


def test_environments_file_defines_local_staging_production():
    envs = load_environments(PROJECT / "runbooks" / "environments.yaml")
    assert set(envs) == {"local", "staging", "production"}
    assert envs["local"].kind == "embedded" and envs["local"].data_dir.name == "local"
    assert envs["staging"].url_env == "STAGING_DATABASE_URL"
    assert envs["production"].url_env == "PRODUCTION_DATABASE_URL" and envs["production"].protected
    assert not envs["staging"].protected
    assert envs["production"].lock_retries.attempts == 30 and envs["staging"].lock_retries is None
    assert envs["production"].lock_retries.max_writer_wait_ms == 150


def test_malformed_lock_retries_in_an_environment(tmp_path):
    path = tmp_path / "envs.yaml"
    path.write_text("environments:\n  staging:\n    kind: url\n    url_env: X\n    lock_retries: {attempts: 0}\n")
    with pytest.raises(EnvironmentConfigError, match="attempts 0 must be a whole number from 1 to 1000"):
        load_environments(path)


def test_unknown_environment_lists_the_known_ones():
    with pytest.raises(EnvironmentUnknownError) as info:
        get_environment("stagng", PROJECT / "runbooks" / "environments.yaml")
    assert str(info.value) == "environment 'stagng' is not defined; known: local, staging, production"


def test_unset_variable_is_named(monkeypatch):
    monkeypatch.delenv("STAGING_DATABASE_URL", raising=False)
    env = get_environment("staging", PROJECT / "runbooks" / "environments.yaml")
    with pytest.raises(EnvironmentConfigError, match="environment variable STAGING_DATABASE_URL is not set"):
        env.url()


@pytest.mark.parametrize("value", ["mysql://u:secret-pw@h/db", "postgresql://u:secret-pw@h:notaport/db?sslmode=bogus=1"])
def test_malformed_url_names_the_variable_not_the_url(monkeypatch, value):
    monkeypatch.setenv("STAGING_DATABASE_URL", value)
    env = get_environment("staging", PROJECT / "runbooks" / "environments.yaml")
    with pytest.raises(EnvironmentConfigError) as info:
        env.url()
    assert "STAGING_DATABASE_URL" in str(info.value) and "secret-pw" not in str(info.value)


def test_url_written_in_the_environments_file_is_refused(tmp_path):
    path = tmp_path / "envs.yaml"
    path.write_text("environments:\n  staging:\n    kind: url\n    url: postgresql://u:pw@h/db\n")
    with pytest.raises(EnvironmentConfigError, match="never write URLs in a file"):
        load_environments(path)


def test_missing_environments_file(tmp_path):
    with pytest.raises(EnvironmentConfigError, match="does not exist"):
        load_environments(tmp_path / "none.yaml")


def test_unreachable_database_is_one_line_without_the_password(monkeypatch, tmp_path):
    from fkrunbook import connect

    monkeypatch.setenv("STAGING_DATABASE_URL", "postgresql://app:hunter2-secret@127.0.0.1:1/db?sslmode=disable")
    with pytest.raises(ConnectionFailedError) as info:
        connect("staging", PROJECT / "runbooks" / "environments.yaml")
    message = str(info.value)
    assert message.startswith("cannot connect to environment 'staging'") and "STAGING_DATABASE_URL" in message
    assert "hunter2-secret" not in message and "\n" not in message


def test_unix_socket_url_is_accepted(monkeypatch):
    monkeypatch.setenv("STAGING_DATABASE_URL", "postgresql://postgres@/fkrunbook?host=/var/run/postgresql")
    env = get_environment("staging", PROJECT / "runbooks" / "environments.yaml")
    assert env.url().endswith("host=/var/run/postgresql")
