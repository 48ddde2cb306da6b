"""The evidence store: where sealed runs are kept for the team, beyond the machine that ran them.

A run is sealed in the local evidence folder first (``audit/<env>/<run-id>/``, see
:mod:`fkrunbook.evidence`), then published, unchanged, to the configured store, in the same
layout:

- a **folder** (the default: the local evidence folder itself, so publishing is a no-op; or a
  shared folder elsewhere);
- a **branch of a git remote**, ``git+<url>#branch=<name>``: each published run is one commit on
  that branch, pushed with the git CLI; a push another publisher got in first is fetched and the
  run replayed on top (and checked again), a few times;
- an **object store**, ``s3://bucket/prefix``, through fsspec (s3fs): AWS S3, Supabase Storage's
  S3 endpoint (``[evidence] endpoint = "https://<project>.supabase.co/storage/v1/s3"``), or any
  S3-compatible service (MinIO, R2). Files go up first and ``manifest.json`` last, so a reader
  never sees a manifest whose files are not there yet.

Credentials come only from the environment: git's own (credential helper, SSH agent, or a URL in
``FKRUNBOOK_STORE``), the AWS variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ...) for
s3. A store URL with a user or password in ``fkrunbook.toml`` is refused, and every message is
stripped of URL credentials and of the values of those variables.

Publishing never overwrites or forks evidence: a run already in the store is skipped when
identical, replaced only when it is a re-seal of the store's copy (the store's newest run of the
environment, every file it held unchanged: an interactive walkthrough adding a phase), and refused
when it would put a second run at the same place of the environment's chain or link to a run
other than the store's previous one. Reading a store for ``archive list|show|verify`` copies it
into a temporary folder and reads that with :mod:`fkrunbook.evidence`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import StoreError
from .evidence import MANIFEST, Run, _verify_files, chain_lock, load_runs

FOLDER, GIT, S3 = "folder", "git", "s3"
STORE_ENV = "FKRUNBOOK_STORE"        # overrides [evidence] store (CI, or a URL that carries a token)
DEFAULT_BRANCH = "fkrunbook-evidence"
PUSH_ATTEMPTS = 5
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", STORE_ENV)
SCHEMES = "a folder, git+<url>#branch=<name>, or s3://bucket/prefix"


@dataclass(frozen=True)
class Store:
    """One evidence store. ``location``: the folder, the git remote's URL, or ``bucket/prefix``."""
    kind: str
    location: str
    branch: str | None = None
    endpoint: str | None = None
    region: str | None = None

    @property
    def shown(self) -> str:
        """The store as messages show it: never a credential."""
        if self.kind == GIT:
            return f"git+{_strip_userinfo(self.location)}#branch={self.branch}"
        if self.kind == S3:
            return f"s3://{self.location}" + (f" (endpoint {_strip_userinfo(self.endpoint)})" if self.endpoint else "")
        return self.location


# -- which store -------------------------------------------------------------------------------------
def parse_store(value: str | None, default_folder: Path, *, base: Path | None = None, in_file: bool = False,
                endpoint: str | None = None, region: str | None = None) -> Store:
    """A store URL (see the module's doc) as a :class:`Store`; the syntax only, nothing is reached.
    ``in_file``: it comes from fkrunbook.toml, where credentials are refused."""
    if not value or not value.strip():
        return Store(FOLDER, str(default_folder))
    value = value.strip()
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if value.startswith("git+"):
        url, _, fragment = value[4:].partition("#")
        branch = DEFAULT_BRANCH
        if fragment:
            key, _, name = fragment.partition("=")
            if key != "branch" or not name:
                raise StoreError(f"evidence store {_strip_userinfo(value)!r}: the part after # must be branch=<name>, "
                                 f"e.g. git+{_strip_userinfo(url)}#branch={DEFAULT_BRANCH}")
            branch = name
        if not url or not re.fullmatch(r"[A-Za-z0-9._/-]+", branch) or branch.startswith(("-", "/")) or ".." in branch:
            raise StoreError(f"evidence store {_strip_userinfo(value)!r} needs a git URL and a plain branch name, e.g. "
                             f"git+https://github.com/org/repo.git#branch={DEFAULT_BRANCH}")
        userinfo = urlsplit(url).netloc.rpartition("@")[0] if "://" in url else ""
        if in_file and (":" in userinfo or (userinfo and url.lower().startswith(("http://", "https://")))):
            raise _credentials_in_file(value)  # ssh://git@host is a user name, not a credential
        return Store(GIT, url, branch=branch)
    if scheme == "s3":
        if in_file and _has_userinfo(value):
            raise _credentials_in_file(value)
        location = value[5:].strip("/")
        if not location or not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?", location):
            raise StoreError(f"evidence store {value!r} needs a bucket: s3://bucket/prefix (bucket names are "
                             "lower-case letters, digits, dots and dashes)")
        if endpoint and not endpoint.startswith(("https://", "http://")):
            raise StoreError(f"evidence store endpoint {_strip_userinfo(endpoint)!r} must be an http(s) URL, e.g. "
                             "https://<project>.supabase.co/storage/v1/s3")
        if in_file and endpoint and _has_userinfo(endpoint):
            raise _credentials_in_file(endpoint)
        return Store(S3, location, endpoint=endpoint, region=region)
    if scheme == "file":
        return Store(FOLDER, str(Path(value[7:]).resolve()))
    if scheme or value.startswith(("git@", "ssh:", "http:", "https:")):
        named = scheme or value.split(":")[0]
        raise StoreError(f"evidence store {_strip_userinfo(value)!r} has an unknown scheme {named!r}; use {SCHEMES} "
                         "(a git remote is written git+<url>)")
    return Store(FOLDER, str(((base or Path.cwd()) / value).resolve()))


def resolve_store(config, override: str | None = None) -> Store:
    """The store a command uses: ``override`` (--store), else ``FKRUNBOOK_STORE``, else
    ``[evidence] store``, else the project's evidence folder."""
    value = override or os.environ.get(STORE_ENV) or config.store
    return parse_store(value, config.evidence, base=config.root if value == config.store else Path.cwd(),
                       endpoint=config.store_endpoint, region=config.store_region)


def is_local(store: Store, evidence: Path) -> bool:
    """Whether ``store`` is the local evidence folder itself (nothing to publish)."""
    return store.kind == FOLDER and os.path.abspath(store.location) == os.path.abspath(evidence)


# -- publishing ----------------------------------------------------------------------------------------
@dataclass
class Published:
    env: str
    run_id: str
    action: str            # "published", "updated" (a re-seal of the store's copy) or "already in the store"


def publish_run(store: Store, run_dir: Path) -> Published:
    """Publish one sealed run folder to ``store``; :class:`StoreError` (one line, nothing of the run
    changed locally) when it cannot."""
    run = _local_run(Path(run_dir))
    if store.kind == FOLDER:
        return _publish_folder(store, run)
    if store.kind == GIT:
        return _publish_git(store, run)
    return _publish_s3(store, run)


def publish_runs(store: Store, evidence: Path, env: str | None = None) -> list[Published]:
    """Every sealed run of the local evidence folder (``env``: of one environment) that the store
    lacks, oldest first in each chain; stops at the first that cannot be published."""
    runs = sorted((r for r in load_runs(evidence, env) if r.sealed), key=lambda r: (r.env, r.sequence, r.run_id))
    if is_local(store, evidence):
        return [Published(r.env, r.run_id, "already in the store") for r in runs]
    if store.kind == FOLDER:
        return [_publish_folder(store, r) for r in runs]
    if store.kind == GIT:
        with _GitClone(store) as clone:
            return [clone.publish(r) for r in runs]
    fs, root = _s3(store)
    return [_publish_s3(store, r, fs, root) for r in runs]


def publish_sealed(config, environment, run_dir: Path) -> tuple[bool, str] | None:
    """After a run is sealed: publish it to the configured store. Returns (ok, one line), or None
    when there is nothing to do: the store is the local evidence folder, or the environment is
    embedded (a machine's own rehearsal database: ``fkrunbook archive publish --env local`` still
    publishes those runs when asked). Never raises: the sealed run stays intact locally whatever
    happens, and the line says how to publish it later."""
    try:
        store = resolve_store(config)
        if is_local(store, config.evidence) or getattr(environment, "kind", None) == "embedded":
            return None
        published = publish_run(store, run_dir)
        return True, f"{published.action}: {published.env}/{published.run_id} in the evidence store {store.shown}"
    except StoreError as err:
        where = os.path.relpath(run_dir, config.root)
        return False, (f"the run was not published to the evidence store: {err}; it is sealed and intact in {where}: "
                       f"publish it later with `fkrunbook archive publish --env {Path(run_dir).parent.name}`")


def _local_run(run_dir: Path) -> Run:
    found = [r for r in load_runs(run_dir.parent.parent, run_dir.parent.name) if r.path.resolve() == run_dir.resolve()]
    if not found or not found[0].sealed:
        raise StoreError(f"{run_dir.parent.name}/{run_dir.name} is not a sealed run; only sealed runs are published")
    problems = _verify_files(found[0])
    if problems:
        raise StoreError(f"{problems[0]}: the local evidence was altered, so it is not published "
                         "(`fkrunbook archive verify` lists every problem)")
    return found[0]


def _run_files(run: Run) -> list[str]:
    """What a published run holds: every file its manifest seals, then the manifest (written last)."""
    return sorted(run.manifest.get("files") or {}) + [MANIFEST]


def _decide(run: Run, existing: list[Run], store: Store) -> str:
    """What publishing ``run`` does to a store whose runs of its environment are ``existing``:
    "published", "updated" or "already in the store"; :class:`StoreError` when it would overwrite
    or fork the store's chain."""
    where = f"{run.env}/{run.run_id}"
    same = next((r for r in existing if r.run_id == run.run_id), None)
    if same is not None:
        if same.manifest_sha256 == run.manifest_sha256:
            return "already in the store"
        head = max((r for r in existing if r.sealed), key=lambda r: r.sequence, default=None)
        recorded = same.manifest.get("files") or {}
        resealed = (same.sealed and head is same and same.sequence == run.sequence
                    and same.manifest.get("previous_manifest_sha256") == run.manifest.get("previous_manifest_sha256")
                    and all((run.manifest.get("files") or {}).get(k) == v for k, v in recorded.items()))
        if not resealed:
            raise StoreError(f"{where} is in the evidence store {store.shown} with other contents; evidence is never "
                             "overwritten (`fkrunbook archive verify --store ...` shows the store's copy)",
                             store=store.shown)
        return "updated"
    taken = next((r for r in existing if r.sealed and r.sequence == run.sequence), None)
    previous = next((r for r in existing if r.sealed and r.sequence == run.sequence - 1), None)
    fork = None
    if taken is not None:
        fork = f"the store's run {taken.run_id} is #{run.sequence} already"
    elif previous is not None and previous.manifest_sha256 != run.manifest.get("previous_manifest_sha256"):
        fork = f"it links to another run than the store's #{previous.sequence} ({previous.run_id})"
    if fork:
        raise StoreError(f"{where} (#{run.sequence} of the {run.env} chain on this machine) would fork the chain in "
                         f"the evidence store {store.shown}: {fork}; its evidence stays here, sealed. Before the next run, "
                         f"`fkrunbook archive pull --env {run.env}` copies the store's chain here, so runs continue it",
                         store=store.shown)
    return "published"


# folder ------------------------------------------------------------------------------------------------
def _publish_folder(store: Store, run: Run) -> Published:
    target_env = Path(store.location) / run.env
    try:
        with chain_lock(target_env):
            action = _decide(run, load_runs(store.location, run.env), store)
            if action != "already in the store":
                _copy_run(run, target_env / run.run_id)
    except OSError as err:
        raise StoreError(f"cannot write the evidence store {store.shown} ({err.strerror or err}); fix its "
                         "permissions or free space", store=store.shown) from None
    return Published(run.env, run.run_id, action)


def _copy_run(run: Run, target: Path) -> None:
    for name in _run_files(run):  # the manifest last
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run.path / name, target / name)


# git ----------------------------------------------------------------------------------------------------
class _GitClone:
    """A temporary working copy of the store's branch (a new, empty one when the branch does not
    exist yet), removed on exit."""

    def __init__(self, store: Store):
        self.store = store

    def __enter__(self) -> "_GitClone":
        self._tmp = tempfile.TemporaryDirectory(prefix="fkrunbook-store-")
        self.path = Path(self._tmp.name) / "store"
        try:
            if _branch_exists(self.store):
                self._git_top("clone", "--quiet", "--depth", "1", "--single-branch", "--branch", self.store.branch,
                              "--", self.store.location, str(self.path))
            else:
                self.path.mkdir()
                self.git("init", "--quiet")
                self.git("checkout", "--quiet", "--orphan", self.store.branch)
                self.git("remote", "add", "origin", self.store.location)
        except BaseException:
            self._tmp.cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._tmp.cleanup()

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return _git(self.store, "-C", str(self.path), *args, check=check)

    def _git_top(self, *args: str) -> subprocess.CompletedProcess:
        return _git(self.store, *args)

    def publish(self, run: Run) -> Published:
        for _ in range(PUSH_ATTEMPTS):
            action = _decide(run, load_runs(self.path, run.env), self.store)
            if action == "already in the store":
                return Published(run.env, run.run_id, action)
            shutil.rmtree(self.path / run.env / run.run_id, ignore_errors=True)
            _copy_run(run, self.path / run.env / run.run_id)
            self.git("add", "--all", "--", f"{run.env}/{run.run_id}")
            self.git(*_identity(self), "commit", "--quiet", "-m",
                     f"{run.env}/{run.run_id}: sealed run #{run.sequence} ({run.status})",
                     "-m", f"manifest sha256 {run.manifest_sha256}")
            pushed = self.git("push", "--quiet", "origin", f"HEAD:refs/heads/{self.store.branch}", check=False)
            if pushed.returncode == 0:
                return Published(run.env, run.run_id, action)
            if not re.search(r"rejected|fetch first|non-fast-forward|stale info|failed to update ref",
                             pushed.stderr):
                raise _git_failure(self.store, "push to", pushed)
            # Another publisher pushed first: take the branch as it is now, check again, replay.
            fetched = self.git("fetch", "--quiet", "--depth", "1", "origin", self.store.branch, check=False)
            if fetched.returncode != 0:
                raise _git_failure(self.store, "fetch from", fetched)
            self.git("reset", "--quiet", "--hard", "FETCH_HEAD")
        raise StoreError(f"could not push {run.env}/{run.run_id} to the evidence store {self.store.shown}: other "
                         f"publishers pushed first {PUSH_ATTEMPTS} times; publish it later with "
                         "`fkrunbook archive publish`", store=self.store.shown)


def _publish_git(store: Store, run: Run) -> Published:
    with _GitClone(store) as clone:
        return clone.publish(run)


def _branch_exists(store: Store) -> bool:
    listed = _git(store, "ls-remote", "--heads", "--", store.location, f"refs/heads/{store.branch}", check=False)
    if listed.returncode != 0:
        raise _git_failure(store, "reach", listed)
    return bool(listed.stdout.strip())


def _identity(clone: _GitClone) -> list[str]:
    """git's own identity when it has one; else one naming fkrunbook and the operator."""
    if clone.git("config", "user.email", check=False).stdout.strip():
        return []
    import getpass

    return ["-c", f"user.name=fkrunbook ({getpass.getuser()})", "-c", "user.email=fkrunbook@localhost"]


def _git(store: Store, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """The git CLI, never prompting (no terminal in CI): credentials come from git's own helpers."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, env=env, timeout=300)
    except FileNotFoundError:
        raise StoreError("the evidence store is a git branch but git is not installed; install git",
                         store=store.shown) from None
    except subprocess.TimeoutExpired:
        raise StoreError(f"git timed out after 300 s talking to the evidence store {store.shown}; check the remote",
                         store=store.shown) from None
    if check and done.returncode != 0:
        raise _git_failure(store, "use", done)
    return done


def _git_failure(store: Store, doing: str, done: subprocess.CompletedProcess) -> StoreError:
    lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
    reason = next((line for line in lines if line.startswith(("fatal:", "error:", "remote:"))), lines[-1] if lines else
                  f"exit {done.returncode}")
    return StoreError(f"cannot {doing} the evidence store {store.shown}: {redact(reason)}; check the URL and that git "
                      "can reach it with your credentials (credential helper, SSH agent, or FKRUNBOOK_STORE)",
                      store=store.shown)


# s3 -------------------------------------------------------------------------------------------------------
def _s3(store: Store):
    """The fsspec filesystem for an s3:// store and the store's root path (``bucket/prefix``)."""
    try:
        import fsspec
        from botocore.session import get_session
    except ImportError:
        raise StoreError("the evidence store is s3:// but s3fs is not installed; pip install s3fs",
                         store=store.shown) from None
    if get_session().get_credentials() is None:
        raise StoreError(f"no credentials for the evidence store {store.shown}: export AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY (for Supabase Storage: an S3 access key from the project's storage "
                         "settings); they are never written to a file", store=store.shown)
    options: dict = {"skip_instance_cache": True}
    if store.endpoint:
        options["endpoint_url"] = store.endpoint
        options["config_kwargs"] = {"s3": {"addressing_style": "path"}}  # Supabase, MinIO: path-style
    if store.region:
        options["client_kwargs"] = {"region_name": store.region}
    return fsspec.filesystem("s3", **options), store.location


def _publish_s3(store: Store, run: Run, fs=None, root: str | None = None) -> Published:
    if fs is None:
        fs, root = _s3(store)
    try:
        fs.invalidate_cache()
        action = _decide(run, _s3_runs(fs, root, run.env), store)
        if action != "already in the store":
            for name in _run_files(run):  # the manifest last
                fs.put_file(str(run.path / name), f"{root}/{run.env}/{run.run_id}/{name}")
    except StoreError:
        raise
    except Exception as err:
        raise _s3_failure(store, "write to", err) from None
    return Published(run.env, run.run_id, action)


def _s3_runs(fs, root: str, env: str | None = None) -> list[Run]:
    """The runs in the store (of ``env``), from their manifests alone."""
    bucket = root.split("/")[0]
    if not fs.exists(bucket):  # a listing of a missing bucket is empty: say so instead of "no runs"
        raise FileNotFoundError(bucket)
    runs = []
    for path in fs.glob(f"{root}/{env or '*'}/*/{MANIFEST}"):
        data = fs.cat_file(path)
        parts = path.split("/")
        try:
            manifest = json.loads(data)
        except ValueError:
            manifest = {"status": "unreadable manifest"}
        runs.append(Run(parts[-3], parts[-2], Path(path), manifest, hashlib.sha256(data).hexdigest()))
    return runs


def _s3_failure(store: Store, doing: str, err: Exception) -> StoreError:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if isinstance(err, FileNotFoundError) or "NoSuchBucket" in text:
        text = f"bucket {store.location.split('/')[0]!r} does not exist (create it, or fix the store URL)"
    return StoreError(f"cannot {doing} the evidence store {store.shown}: {redact(text)}; check the URL, the endpoint "
                      "and the credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY", store=store.shown)


# -- reading ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def open_store(store: Store, env: str | None = None, *, empty_ok: bool = False):
    """A local folder holding the store's runs (``env``: at least that environment's), in the
    evidence layout, for :func:`fkrunbook.evidence.load_runs` and :func:`~fkrunbook.evidence.verify_archive`:
    a folder store itself, else a temporary copy removed on exit. A git store whose branch does not
    exist is refused (a misspelt branch must not read as "no runs, all intact") unless ``empty_ok``."""
    if store.kind == FOLDER:
        yield Path(store.location)
        return
    with tempfile.TemporaryDirectory(prefix="fkrunbook-store-") as tmp:
        folder = Path(tmp) / "store"
        if store.kind == GIT:
            if _branch_exists(store):
                _git(store, "clone", "--quiet", "--depth", "1", "--single-branch", "--branch", store.branch, "--",
                     store.location, str(folder))
                shutil.rmtree(folder / ".git")
            elif empty_ok:
                folder.mkdir()
            else:
                raise StoreError(f"the evidence store {store.shown} has no branch {store.branch!r}: nothing was "
                                 "published there yet, or the branch name is misspelt", store=store.shown)
        else:
            fs, root = _s3(store)
            folder.mkdir()
            try:
                for run in _s3_runs(fs, root, env):
                    remote = f"{root}/{run.env}/{run.run_id}"
                    for path in fs.find(remote):
                        local = folder / run.env / run.run_id / path[len(remote) + 1:]
                        local.parent.mkdir(parents=True, exist_ok=True)
                        fs.get_file(path, str(local))
            except Exception as err:
                raise _s3_failure(store, "read", err) from None
        yield folder


def pull_runs(store: Store, evidence: Path, env: str | None = None) -> list[Published]:
    """Copy the store's sealed runs (of ``env``) that the local evidence folder lacks into it, so
    the next run there continues the store's chain. Refused, with nothing copied, when a local
    sealed run of the same environment is not in the store as it is here: the two chains differ."""
    evidence = Path(evidence)
    if is_local(store, evidence):
        return []
    with open_store(store, env, empty_ok=True) as folder:
        stored = sorted((r for r in load_runs(folder, env) if r.sealed), key=lambda r: (r.env, r.sequence, r.run_id))
        found = {(r.env, r.run_id): r.manifest_sha256 for r in stored}
        for run in stored:
            problems = _verify_files(run)
            if problems:
                raise StoreError(f"{problems[0]} in the evidence store {store.shown}; nothing was pulled "
                                 "(`fkrunbook archive verify` lists every problem)", store=store.shown)
        envs = {r.env for r in stored}
        for run in load_runs(evidence, env):
            if run.sealed and run.env in envs and found.get((run.env, run.run_id)) != run.manifest_sha256:
                raise StoreError(f"{run.env}/{run.run_id} is sealed here but not in the evidence store {store.shown}: "
                                 "this folder's chain and the store's differ, so nothing was pulled; publish it "
                                 "(`fkrunbook archive publish`), or move it out of the evidence folder (it is "
                                 "sealed evidence: keep it) and pull again", store=store.shown)
        pulled = []
        for run in stored:
            target = evidence / run.env / run.run_id
            if not target.exists():
                with chain_lock(evidence / run.env):
                    _copy_run(run, target)
                pulled.append(Published(run.env, run.run_id, "pulled"))
    if pulled:
        from .evidence import write_index

        write_index(evidence)
    return pulled


# -- never a credential in a message --------------------------------------------------------------------------
def redact(text: str) -> str:
    """``text`` without URL credentials and without the values of the credential variables."""
    text = re.sub(r"(?<=://)[^/@\s'\"]+@", "***@", text)
    for name in SECRET_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
            for secret in re.findall(r"(?<=://)[^/@\s]+(?=@)", value):  # a token inside FKRUNBOOK_STORE's URL
                text = text.replace(secret, "***")
    return text


def _strip_userinfo(url: str | None) -> str:
    return re.sub(r"(?<=://)[^/@\s]+@", "", url or "")


def _has_userinfo(url: str) -> bool:
    return bool(re.search(r"://[^/@\s]+@", url))


def _credentials_in_file(value: str) -> StoreError:
    return StoreError(f"evidence store {_strip_userinfo(value)!r} carries credentials; never write them in "
                      f"fkrunbook.toml: give them in the environment ({STORE_ENV}, git's credential helper, or "
                      "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)")
