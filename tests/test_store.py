"""The evidence store: sealed runs published to a branch of a git remote (a bare repository here)
and to an S3-compatible object store (moto's server, on this machine), then read back, listed and
verified from a checkout whose own evidence folder is empty."""
import json
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from fkrunbook.errors import StoreError
from fkrunbook.evidence import load_runs, seal_run, verify_archive
from fkrunbook.runbook import run_phases
from fkrunbook.store import _GitClone, open_store, parse_store, publish_run, publish_runs, pull_runs

from .conftest import copy_project, project_config
from .test_cli import invoke

KEY_ID, SECRET = "AKIAFKRUNBOOKTEST01", "fk-s3cr3t-Value/never+shown"


# -- the two remotes ------------------------------------------------------------------------------
@pytest.fixture
def git_remote(tmp_path) -> Path:
    remote = tmp_path / "evidence.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(remote)], check=True)
    return remote


def _branch_log(remote: Path, branch: str = "fkrunbook-evidence") -> list[str]:
    done = subprocess.run(["git", "--git-dir", str(remote), "log", "--format=%s", branch], capture_output=True,
                          text=True)
    return done.stdout.splitlines() if done.returncode == 0 else []


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3-compatible server on a free port of 127.0.0.1 (what s3fs's own tests run against)."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws(monkeypatch, tmp_path):
    """Credentials in the environment, and only there (no profile files, no instance metadata)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "FKRUNBOOK_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def bucket(s3_endpoint, aws, request):
    import uuid

    import fsspec

    name = f"fk-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3", endpoint_url=s3_endpoint, skip_instance_cache=True).mkdir(name)
    return name


def _configure(project: Path, store: str, endpoint: str | None = None) -> None:
    """The checkout's fkrunbook.toml names the store (as a team commits it)."""
    lines = ["", "[evidence]", f'store = "{store}"']
    lines += [f'endpoint = "{endpoint}"', 'region = "us-east-1"'] if endpoint else []
    with open(project / "fkrunbook.toml", "a") as file:
        file.write("\n".join(lines) + "\n")


def _sealed(audit: Path, env: str, run_id: str, content: bytes = b"{}") -> Path:
    """A sealed run made by the evidence module itself, without a database (cheap)."""
    run_dir = audit / env / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "orphan_check.results.json").write_bytes(content)
    seal_run(run_dir, {"run_id": run_id, "environment": env, "status": "succeeded", "started_at": run_id,
                       "phases": []}, [])
    return run_dir


# -- done when: published to each store, verified from a third, empty checkout ---------------------------
def _two_runs_published(project, database):
    config = project_config(project, database.environments)
    events = []
    runs = [run_phases(config, "test", ["orphan_check"], on_event=lambda kind, info: events.append((kind, info)))
            for _ in range(2)]
    return runs, [info for kind, info in events if kind == "published"]


def _verified_from_an_empty_checkout(third: Path, runs) -> None:
    assert not (third / "audit").exists()
    verify = invoke("archive", "verify", cwd=third)
    assert verify.exit_code == 0, verify.output
    assert verify.stdout.strip() == "2 sealed run(s) verified: every file and the chain are intact"
    listed = invoke("archive", "list", "--env", "test", cwd=third)
    assert listed.exit_code == 0 and [line.split()[0] for line in listed.stdout.splitlines()[1:]] == \
        [runs[1].run_id, runs[0].run_id]
    shown = invoke("archive", "show", runs[0].run_id, cwd=third)
    assert json.loads(shown.stdout) == json.loads((runs[0].run_dir / "manifest.json").read_text())
    assert not (third / "audit").exists()  # read from the store: nothing was written here


def test_runs_published_to_the_git_store_verify_from_an_empty_checkout(project_copy, database, git_remote, tmp_path,
                                                                        monkeypatch):
    monkeypatch.delenv("FKRUNBOOK_STORE", raising=False)
    url = f"git+file://{git_remote}#branch=fkrunbook-evidence"
    _configure(project_copy, url)
    runs, published = _two_runs_published(project_copy, database)
    assert published == [{"ok": True, "line": f"published: test/{r.run_id} in the evidence store {url}", "store": url}
                         for r in runs]
    assert _branch_log(git_remote) == [f"test/{r.run_id}: sealed run #{n} (succeeded)" for n, r in
                                       reversed(list(enumerate(runs, start=1)))]  # one commit per sealed run
    third = copy_project(tmp_path / "third")
    _configure(third, url)
    _verified_from_an_empty_checkout(third, runs)

    # An auditor's check is real: a file edited in the store is named.
    with _GitClone(parse_store(url, tmp_path)) as clone:
        (clone.path / "test" / runs[0].run_id / "orphan_check.results.json").write_text("{}\n")
        clone.git("-c", "user.name=x", "-c", "user.email=x@x", "commit", "--quiet", "-a", "-m", "edited")
        clone.git("push", "--quiet", "origin", "HEAD:refs/heads/fkrunbook-evidence")
    verify = invoke("archive", "verify", cwd=third)
    assert verify.exit_code == 1
    assert f"test/{runs[0].run_id}: file orphan_check.results.json changed" in verify.stdout


def test_runs_published_to_the_object_store_verify_from_an_empty_checkout(project_copy, database, bucket, s3_endpoint,
                                                                          tmp_path):
    url = f"s3://{bucket}/team-a/evidence"
    _configure(project_copy, url, s3_endpoint)
    runs, published = _two_runs_published(project_copy, database)
    assert [p["ok"] for p in published] == [True, True], published
    assert published[0]["line"] == (f"published: test/{runs[0].run_id} in the evidence store {url} "
                                    f"(endpoint {s3_endpoint})")
    import fsspec

    fs = fsspec.filesystem("s3", endpoint_url=s3_endpoint, skip_instance_cache=True)
    stored = sorted(p.rsplit("/", 1)[1] for p in fs.find(f"{bucket}/team-a/evidence/test/{runs[0].run_id}"))
    assert stored == sorted([*json.loads((runs[0].run_dir / "manifest.json").read_text())["files"], "manifest.json"])
    third = copy_project(tmp_path / "third")
    _configure(third, url, s3_endpoint)
    _verified_from_an_empty_checkout(third, runs)


# -- publishing: concurrent pushes, forks, re-seals ------------------------------------------------------
def test_a_push_another_publisher_got_in_first_is_fetched_and_replayed(git_remote, tmp_path):
    store = parse_store(f"git+file://{git_remote}#branch=fkrunbook-evidence", tmp_path)
    staging = _sealed(tmp_path / "a" / "audit", "staging", "run-a")
    production = _sealed(tmp_path / "b" / "audit", "production", "run-b")
    assert publish_run(store, staging).action == "published"  # the branch exists
    with _GitClone(store) as stale:  # cloned before the other operator's push
        assert publish_run(store, production).action == "published"
        assert stale.publish(load_runs(tmp_path / "a" / "audit")[0]).action == "already in the store"
        late = _sealed(tmp_path / "a" / "audit", "staging", "run-a2")
        assert stale.publish(next(r for r in load_runs(tmp_path / "a" / "audit") if r.path == late)).action == \
            "published"  # rejected, fetched, checked again and replayed on top
    assert len(_branch_log(git_remote)) == 3
    with open_store(store) as folder:
        assert verify_archive(folder) == ([], 3)


def test_publishers_at_the_same_moment_all_land(git_remote, tmp_path):
    store = parse_store(f"git+file://{git_remote}#branch=fkrunbook-evidence", tmp_path)
    runs = [_sealed(tmp_path / f"op{i}" / "audit", f"env{i}", f"run-{i}") for i in range(4)]
    start, errors = threading.Barrier(len(runs)), []

    def publish(run_dir):
        start.wait()
        try:
            publish_run(store, run_dir)
        except StoreError as err:
            errors.append(str(err))

    threads = [threading.Thread(target=publish, args=(r,)) for r in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(_branch_log(git_remote)) == 4
    with open_store(store) as folder:
        assert verify_archive(folder) == ([], 4)


@pytest.mark.parametrize("kind", ["git", "s3", "folder"])
def test_a_run_that_would_fork_the_stores_chain_is_refused(kind, git_remote, tmp_path, request):
    if kind == "s3":
        url = f"s3://{request.getfixturevalue('bucket')}/x"
        store = parse_store(url, tmp_path, endpoint=request.getfixturevalue("s3_endpoint"))
    else:
        store = parse_store(f"git+file://{git_remote}" if kind == "git" else str(tmp_path / "shared"), tmp_path)
    first = _sealed(tmp_path / "a" / "audit", "staging", "run-a")
    assert [p.action for p in publish_runs(store, tmp_path / "a" / "audit")] == ["published"]
    other = _sealed(tmp_path / "b" / "audit", "staging", "run-b")  # another machine's chain also starts at #1
    with pytest.raises(StoreError, match=r"staging/run-b \(#1 of the staging chain on this machine\) would fork the "
                                         r"chain in the evidence store .*: the store's run run-a is #1 already"):
        publish_run(store, other)
    with open_store(store) as folder:
        assert [r.run_id for r in load_runs(folder)] == ["run-a"]
        assert verify_archive(folder) == ([], 1)
    assert (first / "manifest.json").exists() and (other / "manifest.json").exists()


def test_a_new_machine_pulls_the_stores_chain_and_its_next_run_continues_it(git_remote, tmp_path):
    store = parse_store(f"git+file://{git_remote}#branch=fkrunbook-evidence", tmp_path)
    first = tmp_path / "first" / "audit"
    for run_id in ("r1", "r2"):
        _sealed(first, "staging", run_id)
    publish_runs(store, first)
    second = tmp_path / "second" / "audit"
    assert [(p.env, p.run_id) for p in pull_runs(store, second)] == [("staging", "r1"), ("staging", "r2")]
    assert pull_runs(store, second) == []  # nothing new
    run_dir = _sealed(second, "staging", "r3")
    assert json.loads((run_dir / "manifest.json").read_text())["sequence"] == 3
    assert publish_run(store, run_dir).action == "published"
    with open_store(store) as folder:
        assert verify_archive(folder) == ([], 3)
    forked = tmp_path / "third" / "audit"
    _sealed(forked, "staging", "x1")  # sealed before pulling: its chain is not the store's
    with pytest.raises(StoreError, match="staging/x1 is sealed here but not in the evidence store .*: this folder's "
                                         "chain and the store's differ, so nothing was pulled"):
        pull_runs(store, forked)
    assert [r.run_id for r in load_runs(forked)] == ["x1"]


def test_archive_commands_read_the_local_folder_when_asked(project_copy, git_remote, monkeypatch):
    monkeypatch.delenv("FKRUNBOOK_STORE", raising=False)
    _configure(project_copy, f"git+file://{git_remote}")
    _sealed(project_copy / "audit", "staging", "only-here")
    assert _one_line_error(invoke("archive", "list", cwd=project_copy)).endswith(
        "has no branch 'fkrunbook-evidence': nothing was published there yet, or the branch name is misspelt")
    listed = invoke("archive", "list", "--local", cwd=project_copy)
    assert "only-here" in listed.stdout
    assert invoke("archive", "verify", "--local", cwd=project_copy).exit_code == 0
    assert invoke("archive", "publish", cwd=project_copy).exit_code == 0
    assert "only-here" in invoke("archive", "list", cwd=project_copy).stdout


def test_a_resealed_head_replaces_its_copy_and_an_altered_copy_is_never_overwritten(git_remote, tmp_path):
    store = parse_store(f"git+file://{git_remote}", tmp_path)
    audit = tmp_path / "audit"
    run_dir = _sealed(audit, "local", "walk")
    assert publish_run(store, run_dir).action == "published"
    (run_dir / "apply.results.json").write_text("{}")  # a walkthrough's next phase, sealed into the same run
    run = load_runs(audit)[0]
    seal_run(run_dir, dict(run.manifest), [])
    assert publish_run(store, run_dir).action == "updated"
    with open_store(store) as folder:
        assert verify_archive(folder) == ([], 1)
        assert "apply.results.json" in load_runs(folder)[0].manifest["files"]
    copy = tmp_path / "copy" / "audit"  # the same run id sealed with other contents elsewhere
    _sealed(copy, "local", "walk", b'{"other": 1}')
    with pytest.raises(StoreError, match="local/walk is in the evidence store .* with other contents; evidence is "
                                         "never overwritten"):
        publish_run(store, copy / "local" / "walk")


def test_a_locally_altered_run_is_not_published(git_remote, tmp_path):
    store = parse_store(f"git+file://{git_remote}", tmp_path)
    run_dir = _sealed(tmp_path / "audit", "staging", "r1")
    (run_dir / "orphan_check.results.json").write_text('{"orphans": 0}')
    with pytest.raises(StoreError, match="staging/r1: file orphan_check.results.json changed: the local evidence was "
                                         "altered, so it is not published"):
        publish_run(store, run_dir)
    assert _branch_log(git_remote) == []


# -- the runner publishes; a failure leaves the run sealed locally and says how to publish later ---------------
def test_a_failed_publish_is_one_line_and_archive_publish_catches_up(project_copy, database, tmp_path, monkeypatch):
    remote = tmp_path / "later.git"  # not there yet: the push fails
    url = f"git+file://{remote}#branch=evidence"
    monkeypatch.setenv("FKRUNBOOK_STORE", url)
    events = []
    result = run_phases(project_config(project_copy, database.environments), "test", ["orphan_check"],
                        on_event=lambda kind, info: events.append((kind, info)))
    [published] = [info for kind, info in events if kind == "published"]
    assert not published["ok"] and "\n" not in published["line"]
    assert published["line"].startswith(f"the run was not published to the evidence store: cannot reach the evidence "
                                        f"store {url}: ")
    assert published["line"].endswith(f"it is sealed and intact in audit/test/{result.run_id}: publish it later "
                                      "with `fkrunbook archive publish --env test`")
    assert verify_archive(project_copy / "audit") == ([], 1)
    subprocess.run(["git", "init", "--quiet", "--bare", str(remote)], check=True)
    later = invoke("archive", "publish", "--env", "test", cwd=project_copy)
    assert later.exit_code == 0, later.output
    assert later.stdout.splitlines() == [f"published: test/{result.run_id}",
                                         f"1 run(s) published to the evidence store {url}; 0 already there"]
    again = invoke("archive", "publish", cwd=project_copy)
    assert again.stdout.splitlines()[-1] == f"0 run(s) published to the evidence store {url}; 1 already there"


def test_runs_on_the_embedded_local_database_stay_local_unless_published_by_hand(tmp_path, monkeypatch, git_remote):
    from types import SimpleNamespace

    from fkrunbook.config import load_config
    from fkrunbook.store import publish_sealed

    project = copy_project(tmp_path / "project")
    _configure(project, f"git+file://{git_remote}")
    config = load_config(project / "fkrunbook.toml")
    run_dir = _sealed(config.evidence, "local", "rehearsal")
    assert publish_sealed(config, SimpleNamespace(kind="embedded"), run_dir) is None
    assert _branch_log(git_remote) == []
    assert publish_sealed(config, SimpleNamespace(kind="url"), run_dir)[0] is True


# -- bad input: one line, non-zero, nothing changed, no secret ---------------------------------------------------
def _one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("fkrunbook: error: "), result.output
    return lines[0]


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("store, expected", [
    ("ftp://evidence.example.com/audit", "[evidence] evidence store 'ftp://evidence.example.com/audit' has an unknown "
                                         "scheme 'ftp'; use a folder, git+<url>#branch=<name>, or s3://bucket/prefix"),
    ("https://github.com/org/evidence.git", "has an unknown scheme 'https'; use a folder, git+<url>#branch=<name>, or "
                                            "s3://bucket/prefix (a git remote is written git+<url>)"),
    ("git+https://x-access-token:ghp_T0kenValue@github.com/org/evidence.git#branch=ev",
     "evidence store 'git+https://github.com/org/evidence.git#branch=ev' carries credentials; never write them in "
     "fkrunbook.toml"),
    ("git+https://github.com/org/evidence.git#brnch=ev", "the part after # must be branch=<name>"),
    ("s3://Bad_Bucket/x", "needs a bucket: s3://bucket/prefix"),
    ('s3://fk-evidence/x"\nendpoint = "abcd.supabase.co/storage/v1/s3',
     "evidence store endpoint 'abcd.supabase.co/storage/v1/s3' must be an http(s) URL"),
    ('s3://fk-evidence/x"\nendpoint = "https://key:ghp_T0kenValue@minio.example.com',
     "evidence store 'https://minio.example.com' carries credentials; never write them in fkrunbook.toml"),
])
def test_a_bad_store_in_the_configuration_is_one_line(tmp_path, store, expected):
    project = copy_project(tmp_path / "project")
    _sealed(project / "audit", "staging", "r1")
    _configure(project, store)
    before = _tree(project)
    for args in (["archive", "list"], ["archive", "publish"], ["run", "--env", "staging"]):
        line = _one_line_error(invoke(*args, cwd=project))
        assert expected in line and "ghp_T0kenValue" not in line
    assert _tree(project) == before


def test_an_unreachable_git_remote_is_one_line_without_the_token(project_copy, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = "ghp_S3cretT0kenNeverShown"
    monkeypatch.setenv("FKRUNBOOK_STORE", f"git+http://x-access-token:{token}@127.0.0.1:{port}/org/ev.git#branch=ev")
    _sealed(project_copy / "audit", "staging", "r1")
    before = _tree(project_copy)
    for args in (["archive", "publish"], ["archive", "verify"], ["archive", "list"]):
        result = invoke(*args, cwd=project_copy)
        line = _one_line_error(result)
        assert line.startswith(f"fkrunbook: error: cannot reach the evidence store git+http://127.0.0.1:{port}/org/"
                               "ev.git#branch=ev: "), line
        assert token not in result.output + result.stderr
    assert _tree(project_copy) == before


def test_missing_object_store_credentials_are_one_line(project_copy, aws, s3_endpoint, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    _configure(project_copy, "s3://fk-evidence/team", s3_endpoint)
    _sealed(project_copy / "audit", "staging", "r1")
    before = _tree(project_copy)
    for args in (["archive", "publish"], ["archive", "list"]):
        line = _one_line_error(invoke(*args, cwd=project_copy))
        assert line == (f"fkrunbook: error: no credentials for the evidence store s3://fk-evidence/team (endpoint "
                        f"{s3_endpoint}): export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (for Supabase Storage: an "
                        "S3 access key from the project's storage settings); they are never written to a file")
    assert _tree(project_copy) == before


def test_a_failed_publish_to_the_object_store_shows_no_secret(project_copy, aws, s3_endpoint):
    _configure(project_copy, "s3://no-such-bucket-here/team", s3_endpoint)
    _sealed(project_copy / "audit", "staging", "r1")
    before = _tree(project_copy)
    result = invoke("archive", "publish", cwd=project_copy)
    line = _one_line_error(result)
    assert "bucket 'no-such-bucket-here' does not exist (create it, or fix the store URL)" in line
    assert SECRET not in result.output + result.stderr and KEY_ID not in result.output + result.stderr
    assert _tree(project_copy) == before


VERIFY = "The store's evidence intact, checked against staging's ledger"


def test_two_scheduled_ci_runs_from_empty_checkouts_form_one_chain_in_the_store(database, git_remote, tmp_path,
                                                                                   monkeypatch):
    """The scheduled workflow `init --ci github` writes, its fkrunbook steps in order, twice, each
    time in a fresh checkout (as CI starts): the second run continues the store's chain, both are
    published, and the store verifies."""
    import shlex

    import yaml

    from fkrunbook.workflows import render_workflows

    monkeypatch.delenv("FKRUNBOOK_STORE", raising=False)
    workflow = yaml.safe_load(render_workflows("fkrunbook", "supabase", "fkrunbook")["fkrunbook-orphan-detection.yml"])
    steps = [(step["name"], shlex.split(step["run"])[1:]) for job in workflow["jobs"].values()
             for step in job["steps"] if step.get("run", "").startswith("fkrunbook ")]
    url = f"git+file://{git_remote}#branch=fkrunbook-evidence"
    for job in ("monday", "tuesday"):
        checkout = copy_project(tmp_path / job)
        _configure(checkout, url)
        outcome = {name: invoke(*argv, cwd=checkout, env={"STAGING_DATABASE_URL": database.url})
                   for name, argv in steps}
        for name in ("Continue the evidence store's chain", "Publish the evidence to the store",
                     VERIFY):
            assert outcome[name].exit_code == 0, f"{job}: {name}: {outcome[name].output}"
        assert outcome[VERIFY].stdout.strip().endswith("every file, the chain and the ledger are intact")
    logged = _branch_log(git_remote)
    assert len(logged) == 2 and logged[0].endswith("sealed run #2 (failed)") and logged[1].endswith("#1 (failed)")
    with open_store(parse_store(url, tmp_path)) as folder:
        assert verify_archive(folder) == ([], 2)  # failed: --fail-on-orphans on the sample's planted orphans


def test_a_notebook_run_in_jupyterlab_is_published_when_sealed(project_copy, database, git_remote, monkeypatch):
    """nbclient runs the walkthrough's orphan check as JupyterLab does; its sealing publishes it."""
    from fkrunbook.config import load_config
    from fkrunbook.lab import prepare_walkthrough

    from .conftest import write_config
    from .test_walkthrough import execute

    url = f"git+file://{git_remote}#branch=fkrunbook-evidence"
    monkeypatch.setenv("FKRUNBOOK_STORE", url)  # the kernel inherits it
    write_config(project_config(project_copy, database.environments), project_copy)
    walkthrough = prepare_walkthrough(load_config(project_copy / "fkrunbook.toml"), "test")
    book = execute(walkthrough.folder / "01_orphan_check.ipynb")
    shown = [o["data"]["text/markdown"] for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])
             if "text/markdown" in o.get("data", {})]
    assert any(line.endswith(f" Published: test/{walkthrough.run_id} in the evidence store {url}.")
               for line in shown), shown
    assert _branch_log(git_remote) == [f"test/{walkthrough.run_id}: sealed run #1 (succeeded)"]


def test_with_the_default_store_there_is_nothing_to_publish(project_copy, monkeypatch):
    monkeypatch.delenv("FKRUNBOOK_STORE", raising=False)
    _sealed(project_copy / "audit", "staging", "r1")
    result = invoke("archive", "publish", cwd=project_copy)
    assert result.exit_code == 0 and result.stdout.startswith("the evidence store is the local evidence folder audit: "
                                                              "nothing to publish")


def test_the_runners_publish_warning_is_one_line_on_stderr_even_when_quiet(project_copy, database, tmp_path):
    url = f"git+file://{tmp_path / 'nowhere.git'}#branch=evidence"
    result = invoke("run", "--env", "staging", "--phase", "orphan_check", "--quiet", cwd=project_copy,
                    env={"STAGING_DATABASE_URL": database.url, "FKRUNBOOK_STORE": url})
    assert result.exit_code == 0, result.output
    [run_dir] = [p for p in (project_copy / "audit" / "staging").iterdir() if p.is_dir()]
    shown = run_dir.relative_to(project_copy)
    assert result.stdout.splitlines() == [f"run {run_dir.name} succeeded; evidence: {shown}"]
    [warning] = result.stderr.splitlines()
    assert warning.startswith(f"fkrunbook: warning: the run was not published to the evidence store: cannot reach the "
                              f"evidence store {url}: ")
    assert warning.endswith("publish it later with `fkrunbook archive publish --env staging`")
    assert verify_archive(project_copy / "audit") == ([], 1)


def test_reading_an_object_store_whose_bucket_is_missing_is_one_line(project_copy, aws, s3_endpoint):
    _configure(project_copy, "s3://no-such-bucket-here/team", s3_endpoint)
    line = _one_line_error(invoke("archive", "verify", cwd=project_copy))
    assert "cannot read the evidence store s3://no-such-bucket-here/team" in line and SECRET not in line
