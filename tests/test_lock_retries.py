"""The lock-retry schedule: set in the spec or per environment, followed attempt by attempt by apply
(each attempt's lock_timeout recorded), shown by the preview with the longest a writer can wait."""
import threading
import time

import psycopg
import pytest
import yaml

from fkrunbook.environment import load_environments
from fkrunbook.errors import EnvironmentConfigError, LockUnavailableError, SpecError
from fkrunbook.executor import apply_plan
from fkrunbook.orphans import clean_up_orphans
from fkrunbook.plan import plan_migration
from fkrunbook.spec import DEFAULT_LOCK_RETRIES, LockRetries, parse_retries, parse_spec
from fkrunbook.verify import verify_constraints

from .conftest import SPEC
from .test_migration import MIGRATIONS


def _retries(raw) -> LockRetries:
    doc = yaml.safe_load(SPEC.read_text())
    doc["migration"]["lock_retries"] = raw
    return parse_spec(doc).migration.retries


def test_the_projects_spec_lists_its_schedule_step_by_step(spec):
    retries = spec.migration.retries
    assert retries.steps[:5] == ((100, 50), (100, 100), (100, 200), (100, 500), (100, 1000))
    assert retries.attempts == 12 and retries.on_exhaustion == "fail"
    assert retries.max_writer_wait_ms == 150
    assert retries.give_up_after_s == pytest.approx(1.4 + 26.85)  # every wait in full, every pause but the last
    assert retries.describe() == ("100 ms/50 ms, 100 ms/100 ms, 100 ms/200 ms, 100 ms/500 ms, 100 ms/1 s ×2, "
                                  "100 ms/2 s ×2, 150 ms/5 s ×2, 150 ms/10 s ×2")


def test_a_generated_schedule_rises_per_attempt_up_to_its_max():
    retries = _retries({"attempts": 5, "lock_timeout": "100ms", "lock_timeout_max": "300ms", "backoff": "1s",
                        "backoff_max": "3s"})
    assert retries.steps == ((100, 1000), (150, 2000), (200, 3000), (250, 3000), (300, 3000))
    assert _retries(None) == DEFAULT_LOCK_RETRIES and DEFAULT_LOCK_RETRIES.steps[:2] == ((100, 50), (103, 100))
    assert DEFAULT_LOCK_RETRIES.steps[-1] == (150, 10000)
    # the keys specs had before the schedule still load: the timeouts now start short
    old = _retries({"attempts": 10, "backoff": "500ms", "backoff_max": "10s"})
    assert old.attempts == 10 and old.steps[0] == (100, 500) and old.max_lock_timeout_ms == 150
    waiting = _retries({"schedule": [["100ms", "1s"]], "on_exhaustion": "wait"})
    assert waiting.max_writer_wait_ms is None and waiting.describe().endswith("then one attempt without lock_timeout")


@pytest.mark.parametrize("raw, expected", [
    ({"schedule": []}, "migration.lock_retries.schedule must list 1 to 1000 steps [lock_timeout, pause]"),
    ({"schedule": [["100ms"]]}, "migration.lock_retries.schedule[0] ['100ms'] must be a pair [lock_timeout, pause]"),
    ({"schedule": [["100ms", "soon"]]}, "migration.lock_retries.schedule[0] 'soon' must be a duration like 100ms"),
    ({"schedule": [["0ms", "1s"]]}, "schedule[0] has lock_timeout 0, which waits forever"),
    ({"schedule": "100ms"}, "migration.lock_retries.schedule must be a list, not str"),
    ({"schedule": [["100ms", "1s"]], "attempts": 3}, "has both 'schedule' and 'attempts'"),
    ({"attemps": 3}, "migration.lock_retries has an unknown key 'attemps'; known: schedule, on_exhaustion, attempts"),
    ({"attempts": 0}, "migration.lock_retries.attempts 0 must be a whole number from 1 to 1000"),
    ({"lock_timeout": "1s", "lock_timeout_max": "100ms"}, "lock_timeout_max 100ms is shorter than lock_timeout 1s"),
    ({"lock_timeout": "0ms"}, "migration.lock_retries.lock_timeout 0 waits forever"),
    ({"on_exhaustion": "retry"}, "migration.lock_retries.on_exhaustion 'retry' must be fail"),
])
def test_a_bad_schedule_gets_one_clear_line(raw, expected):
    with pytest.raises(SpecError) as info:
        _retries(raw)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_an_environment_overrides_the_schedule_and_a_bad_one_names_it(tmp_path):
    path = tmp_path / "envs.yaml"
    path.write_text("environments:\n  busy:\n    kind: url\n    url_env: X\n"
                    "    lock_retries: {schedule: [[50ms, 1s], [100ms, 2s]]}\n  quiet:\n    kind: url\n    url_env: Y\n")
    envs = load_environments(path)
    assert envs["busy"].lock_retries.steps == ((50, 1000), (100, 2000)) and envs["quiet"].lock_retries is None
    path.write_text("environments:\n  busy:\n    kind: url\n    url_env: X\n    lock_retries: {schedule: [[1s]]}\n")
    with pytest.raises(EnvironmentConfigError) as info:
        load_environments(path)
    assert str(info.value).startswith("environment 'busy': lock_retries.schedule[0] ['1s'] must be a pair")
    assert "\n" not in str(info.value)
    assert parse_retries({"schedule": [["1s", "1s"]]}, "x").steps == ((1000, 1000),)


def test_the_preview_shows_the_schedule_and_the_longest_writer_wait(database, spec):
    plan = plan_migration(database.connect(), spec, MIGRATIONS)
    text = plan.summary().data
    assert "**Lock retries**: 12 attempt(s) per statement" in text and spec.migration.retries.describe() in text
    assert "then the step fails with nothing of it done (after 28.25 s at worst)" in text
    assert "**The longest a writer can wait behind any statement: 150 ms**" in text
    assert "`VALIDATE` (SHARE UPDATE EXCLUSIVE on the child, ROW SHARE on the parent) do not block writers" in text
    assert set(plan.statements["blocks_writes"]) == {"no", "for an instant, at most 150 ms per attempt"}
    assert plan.results()["lock_schedule"][0] == [100, 50] and plan.results()["max_writer_wait_ms"] == 150


def test_the_schedule_is_part_of_the_plan_hash_and_an_environment_override_is_used(database, spec):
    with open(database.environments, "a") as file:
        file.write("  patient:\n    kind: url\n    url_env: FKRUNBOOK_TEST_URL\n"
                   "    lock_retries: {schedule: [[100ms, 1s], [5s, 1s]], on_exhaustion: wait}\n")
    plan = plan_migration(database.connect(), spec, MIGRATIONS)
    other = plan_migration(database.connect(), spec, MIGRATIONS, LockRetries(((100, 1000), (200, 1000))))
    assert plan.hash != other.hash and plan.to_run == other.to_run
    patient = plan_migration(database.connect("patient"), spec, MIGRATIONS)
    assert patient.lock_retries.steps == ((100, 1000), (5000, 1000))
    assert "**The longest a writer can wait behind any statement: unbounded (on_exhaustion: wait)**" in \
        patient.summary().data


def _hold_an_organization_row(database):
    """Another session updates one organization and keeps its transaction open: ROW EXCLUSIVE on the
    parent, which the ADD ... NOT VALID (SHARE ROW EXCLUSIVE) must wait for."""
    conn = psycopg.connect(database.url, application_name="row-holder")
    conn.execute("UPDATE organizations_projection SET updated_at = now() "
                 "WHERE id = (SELECT id FROM organizations_projection ORDER BY id LIMIT 1)")
    return conn


SCHEDULE = LockRetries(((100, 100), (200, 100), (300, 100), (400, 100), (500, 100), (600, 3000)))


def test_apply_follows_the_schedule_against_a_real_lock_holder(database, spec, tmp_path):
    clean_up_orphans(database.connect(), spec, tmp_path, "clean", confirm=True)
    holder = _hold_an_organization_row(database)
    threading.Timer(1.2, holder.close).start()  # released during the sixth attempt's pause at the latest
    result = apply_plan(database.connect(), spec, MIGRATIONS, {}, retries=SCHEDULE)
    attempts = result.attempts
    add = attempts[attempts["statement"] == attempts["statement"][attempts["outcome"] == "lock timeout"].iloc[0]]
    failed = add[add["outcome"] == "lock timeout"]
    assert len(failed) >= 2 and add["outcome"].iloc[-1] == "done"
    assert list(add["attempt"]) == list(range(1, len(add) + 1))
    assert list(add["lock_timeout_ms"]) == [t for t, _ in SCHEDULE.steps[:len(add)]]  # rising, as scheduled
    for _, row in failed.iterrows():  # each failed attempt waited its own lock_timeout, not more
        assert row["lock_timeout_ms"] / 1000 * 0.9 <= row["waited_s"] < row["lock_timeout_ms"] / 1000 + 0.5
        assert "row-holder" in row["blockers"]
    assert result.results()["lock_schedule"] == [[100, 100], [200, 100], [300, 100], [400, 100], [500, 100], [600, 3000]]
    assert result.results()["max_writer_wait_ms"] == 600 and result.results()["lock_retries"] == len(failed)
    assert verify_constraints(database.connect(), spec)["ok"].all()


def test_after_the_last_step_it_fails_or_waits_as_the_schedule_says(database, spec, tmp_path):
    clean_up_orphans(database.connect(), spec, tmp_path, "clean", confirm=True)
    holder = _hold_an_organization_row(database)
    try:
        with pytest.raises(LockUnavailableError) as info:
            apply_plan(database.connect(), spec, MIGRATIONS, {}, retries=LockRetries(((100, 50), (200, 50))))
    finally:
        holder.close()
    assert "in 2 attempts of lock_timeout 100ms to 200ms: held by pid" in str(info.value)
    assert [a["lock_timeout_ms"] for a in info.value.attempts] == [100, 200]
    holder = _hold_an_organization_row(database)
    threading.Timer(1.0, holder.close).start()
    result = apply_plan(database.connect(), spec, MIGRATIONS, {}, retries=LockRetries(((100, 50),), "wait"))
    last = result.attempts[result.attempts["lock_timeout_ms"] == 0]
    assert len(last) == 1 and last["outcome"].iloc[0] == "done" and last["waited_s"].iloc[0] >= 0.5
    assert verify_constraints(database.connect(), spec)["ok"].all()
    assert "**No statement to run blocks writers**" in plan_migration(database.connect(), spec, MIGRATIONS).summary().data


def _waiting(url, query_like, timeout=60.0):
    """Block until a session waits for a lock running a statement like ``query_like``."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                            (query_like,)).fetchone()[0]:
                return
            time.sleep(0.02)
    pytest.fail(f"no session waited on a lock running {query_like!r} within {timeout} s")


def test_a_writer_waits_one_lock_timeout_even_when_the_add_waits_for_both_tables(database, spec, tmp_path):
    """The ADD waits for the child's lock (held by one session), gets it, then waits for the parent's
    (held by another): a writer queued on the child meanwhile waits for one attempt's lock_timeout
    at most, not the two waits end to end."""
    clean_up_orphans(database.connect(), spec, tmp_path, "clean", confirm=True)
    child = psycopg.connect(database.url, application_name="child-holder")
    child.execute("LOCK TABLE impersonation_sessions_projection IN ROW EXCLUSIVE MODE")
    parent = _hold_an_organization_row(database)
    outcome, waits = {}, []

    def apply():
        try:
            apply_plan(database.connect(), spec, MIGRATIONS, {}, retries=LockRetries(((2000, 100),)))
        except LockUnavailableError as err:
            outcome["error"] = err

    def write():
        with psycopg.connect(database.url, autocommit=True) as conn:
            started = time.monotonic()
            conn.execute("UPDATE impersonation_sessions_projection SET ended_at = now() WHERE session_id = 'sess-1'")
            waits.append(time.monotonic() - started)

    applying = threading.Thread(target=apply)
    applying.start()
    try:
        _waiting(database.url, "ALTER TABLE%impersonation_sessions_projection%ADD CONSTRAINT%")  # for the child
        writer = threading.Thread(target=write)
        writer.start()
        _waiting(database.url, "UPDATE impersonation_sessions_projection%")  # queued behind the ADD
        time.sleep(1.0)
        child.close()  # the ADD gets the child's lock and waits for the parent's; the writer waits on
        writer.join(10)
        applying.join(30)
    finally:
        child.close()
        parent.close()
    assert isinstance(outcome.get("error"), LockUnavailableError)  # the parent was never free
    assert outcome["error"].attempts[0]["waited_s"] < 2.5  # both waits together: one lock_timeout (2 s), not 3 s
    assert waits and waits[0] < 2.5  # the writer too: not the child's 1 s plus the parent's 2 s
