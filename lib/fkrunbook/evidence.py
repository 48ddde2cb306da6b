"""The evidence of a run: executed notebooks, self-contained HTML reports, and a sealed manifest.

A run folder ``audit/<env>/<run-id>/`` is sealed when the run ends (failed runs too): every
notebook is rendered to an HTML report that loads nothing from anywhere, the folder is scanned
for the connection's secrets, and ``manifest.json`` gets the sha256 of every file in the folder
plus the sha256 of the previous sealed manifest of the same environment (a hash chain) and its
place in that chain. :func:`verify_archive` recomputes all of it. A run killed before sealing
keeps its unsealed manifest (status ``running``) and is listed as incomplete.

A run may be sealed again only while it is the newest sealed run of its environment (the chain
head) and every file it sealed is unchanged: nothing links to the head yet, so it keeps its place
and its link to the run before it, and the new seal covers what was added. That is how the
phases of one interactive walkthrough join one run (see :mod:`fkrunbook.walkthrough`).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import html
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

MANIFEST = "manifest.json"
TEMPLATES = Path(__file__).parent / "templates"


# -- writing ---------------------------------------------------------------------------------------
PROBE_BYTES = 4 * 1024 * 1024  # room for a run's notebooks and reports: checked before anything runs


def open_run_folder(run_dir: Path) -> None:
    """Create the run folder and prove the evidence can be written there (space included) before
    any phase touches the database; a run whose evidence cannot be kept does not start."""
    from .errors import EvidenceUnwritableError

    try:
        run_dir.mkdir(parents=True)
        probe = run_dir / ".probe"
        with open(probe, "wb") as handle:
            handle.write(b"\0" * PROBE_BYTES)
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as err:
        with contextlib.suppress(OSError):
            (run_dir / ".probe").unlink()
        with contextlib.suppress(OSError):
            run_dir.rmdir()
        raise EvidenceUnwritableError(f"cannot write the evidence in {run_dir} ({err.strerror or err}); nothing was "
                                      "run: free space or fix the permissions of the audit folder") from None

def write_manifest(run_dir: Path, manifest: dict) -> None:
    """Write atomically: a reader (or a crash) never sees half a manifest."""
    tmp = run_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    os.replace(tmp, run_dir / MANIFEST)


def render_report(notebook: Path, manifest: dict | None = None) -> Path:
    """The executed notebook as one HTML file with no external script, style or image, opening with
    the run header (:func:`report_header`) and titled after its phase and run when ``manifest``
    (the run's, with its place in the chain already set) is given."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="fkrunbook_report", extra_template_basedirs=[str(TEMPLATES)],
                            embed_images=True)
    node = nbformat.read(notebook, as_version=4)
    resources = {"metadata": {"name": notebook.stem}}
    if manifest is not None:
        header = report_header(notebook, manifest)
        node.metadata["title"] = header["title"]  # in memory only: the page's <title>
        resources["fkrunbook"] = header
    body, _ = exporter.from_notebook_node(node, resources=resources)
    target = notebook.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


MODE_LABELS = {"runner": "cli", "interactive": "interactive"}


def report_header(notebook: Path, manifest: dict) -> dict:
    """What a report's run header shows, as display strings: the phase this notebook ran, its
    environment and outcome, who ran it and when, the commit, the spec and plan hashes, and the
    run's place in its environment's chain with the previous manifest's sha256.

    The report is one of the files the run's manifest hashes, so it cannot show that manifest's
    own sha256 (the digest would have to cover itself): it says where to read it instead."""
    run_dir = notebook.parent
    run_id, env = manifest.get("run_id", run_dir.name), manifest.get("environment", run_dir.parent.name)
    phases = manifest.get("phases") or []
    entry = next((p for p in phases if p.get("notebook") == notebook.name), None) or {}
    phase = entry.get("name") or notebook.stem
    outcome = entry.get("status") or manifest.get("status") or "unknown"
    mode = manifest.get("mode", "runner")
    fields = [
        _field("Phase", phase, note=f"{notebook.name}" + (f", phase {phases.index(entry) + 1} of {len(phases)} "
                                                           "in this run" if entry else ", not in the manifest")),
        _field("Environment", env),
        _field("Outcome", outcome, note=entry.get("error"), tone="bad"),
        _field("Run", MODE_LABELS.get(mode, mode) + (" (fkrunbook run)" if mode == "runner" else
                                                     f" (JupyterLab, walkthrough {manifest.get('walkthrough')})"),
               note="; ".join(f"{p['name']} {p.get('status', '?')}" for p in phases)
               + f"; run {manifest.get('status', 'unknown')} when this report was made"),
        _field("Operator", f"{manifest.get('operator') or '?'} on {manifest.get('host') or '?'}"),
        _field("Started", _when(entry.get("started_at") or manifest.get("started_at"))),
        _field("Ended", _when(entry.get("ended_at") or manifest.get("ended_at")),
               note=f"({entry['duration_s']} s)" if entry.get("duration_s") is not None else None),
    ]
    commit = manifest.get("git_commit")
    if commit:
        dirty = commit.endswith("+dirty")
        fields.append(_field("Git commit", commit.removesuffix("+dirty"), mono=True,
                             note="dirty: tracked files had uncommitted changes" if dirty else "clean tree",
                             tone="warn" if dirty else "note"))
    else:
        fields.append(_field("Git commit", "none", note="the project is not a git repository", tone="warn"))
    spec = manifest.get("spec") or {}
    fields.append(_field("Spec sha256", spec.get("sha256") or "none", mono=bool(spec.get("sha256")),
                         note=spec.get("file")))
    plan = (entry.get("results") or {}).get("plan_hash")
    fields.append(_field("Plan hash", plan or manifest.get("plan_hash") or "none",
                         mono=bool(plan or manifest.get("plan_hash")),
                         note="this phase's plan" if plan else "this run's plan" if manifest.get("plan_hash")
                         else "no plan was made in this run"))
    sequence, previous = manifest.get("sequence"), manifest.get("previous_manifest_sha256")
    if sequence:
        before = next((r for r in load_runs(run_dir.parent.parent, env) if r.manifest_sha256 == previous),
                      None) if previous else None
        ledger = manifest.get("ledger") or {}
        elsewhere = ledger.get("previous_run_id") if not ledger.get("previous_here", True) else None
        fields.append(_field("Chain", f"#{sequence} in {env}'s chain",
                             note=f"previous: run {before.run_id} (#{before.sequence})" if before else
                             f"previous: run {elsewhere}, sealed on another machine (in the ledger)" if elsewhere else
                             "previous: its run is no longer in this archive" if previous else
                             "the first run of the chain", tone="bad" if previous and not before and not elsewhere
                             else "note"))
        fields.append(_field("Previous manifest", previous or "none", mono=bool(previous),
                             note="sha256, linked by this run's manifest" if previous else None))
    else:
        fields.append(_field("Chain", "not sealed", note="this run is not in the chain", tone="warn"))
    fields.append(_field("This manifest", f"{env}/{run_id}/{MANIFEST}", mono=True,
                         note="it hashes this report, so its own sha256 cannot be printed here: read it in "
                              f"audit/index.html or with `fkrunbook archive show {run_id}`"))
    return {
        "title": f"{phase} on {env}, run {run_id} ({outcome}) · fkrunbook report",
        "heading": f"{phase} on {env}", "outcome": outcome, "run_id": run_id,
        "outcome_class": outcome if outcome in ("succeeded", "failed", "cancelled", "running") else "unknown",
        "fields": fields,
        "seal": _marked(f"Report made {_when(_now())}. It is one of the files whose sha256 the run's {MANIFEST} "
                        f"records; `fkrunbook archive verify {run_id}` recomputes them and the chain."),
    }


def _field(label: str, value, *, mono: bool = False, note: str | None = None, tone: str = "note") -> dict:
    return {"label": label, "value": str(value), "mono": mono, "note": _marked(note) if note else None, "tone": tone}


def _marked(text: str):
    """Text with its `commands` in <code>, escaped, as markup the template keeps as it is."""
    from markupsafe import Markup

    parts = html.escape(text).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: no code at all
        return Markup(html.escape(text))
    return Markup("".join(f"<code>{part}</code>" if index % 2 else part for index, part in enumerate(parts)))


def _when(stamp: str | None) -> str:
    """An ISO time as date, time and zone (UTC): ``2026-11-30 06:25:09 UTC``."""
    if not stamp:
        return "not recorded"
    try:
        moment = dt.datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if moment.tzinfo is None:
        return f"{moment:%Y-%m-%d %H:%M:%S} (zone not recorded)"
    return f"{moment.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


def scrub_secrets(run_dir: Path, secrets: list[str], keep: set[str] | frozenset = frozenset()) -> list[str]:
    """Replace any secret found in the folder's files by ***; return the files that held one.
    Secrets are redacted at the source; this is the last check before the run is sealed. Files
    named in ``keep`` (already sealed, and checked unchanged) are left alone."""
    found = []
    needles = [s.encode() for s in secrets if s]
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        if str(path.relative_to(run_dir)) in keep:
            continue
        data = path.read_bytes()
        if any(n in data for n in needles):
            for n in needles:
                data = data.replace(n, b"***")
            path.write_bytes(data)
            found.append(str(path.relative_to(run_dir)))
    return found


def seal_run(run_dir: Path, manifest: dict, secrets: list[str], *, locked: bool = False, ledger=None) -> dict:
    """Render the reports, scan for secrets, hash every file and link the manifest into the chain.

    A manifest sealed before (it has a ``sequence``) is sealed again in place: only while the run
    is the chain head (:func:`is_chain_head`), keeping its place and its link; the reports and the
    scan cover only what is new. ``locked``: the caller holds :func:`chain_lock` already.
    ``ledger`` (a :class:`fkrunbook.ledger.Ledger`): the environment's ledger places the run after
    its last entry and records the sealed manifest (see there); without it, or where it cannot be
    written, the place comes from this folder's chain."""
    from .errors import EvidenceUnwritableError

    sealed = set(manifest.get("files") or {})
    # Under the lock from the start: the reports' headers show the run's place in the chain.
    with contextlib.nullcontext() if locked else chain_lock(run_dir.parent):
        if manifest.get("sequence"):
            if not is_chain_head(run_dir, added_ok=True):
                raise EvidenceUnwritableError(f"run {run_dir.name!r} is no longer the newest sealed run of "
                                              f"{run_dir.parent.name!r}, or a file it sealed changed; it cannot be "
                                              "sealed again: start another run")
            manifest.setdefault("first_sealed_at", manifest.get("sealed_at"))
        else:
            previous = _chain_head(run_dir.parent)
            manifest["sequence"] = previous.sequence + 1 if previous else 1
            manifest["previous_manifest_sha256"] = previous.manifest_sha256 if previous else None
        # The reports' headers show the run's place: where the ledger would put it now (read without
        # its lock, so the ledger's transaction stays short), made again if another run got there first.
        placed = ledger.placement(run_dir, manifest) if ledger is not None else manifest
        reports = _render_reports(run_dir, placed, manifest, sealed)
        manifest["secrets_redacted_in"] = sorted(set(manifest.get("secrets_redacted_in") or [])
                                                 | set(scrub_secrets(run_dir, secrets, keep=sealed)))
        with ledger.link(run_dir, manifest) if ledger is not None else contextlib.nullcontext():
            if _place_of(placed) != _place_of(manifest):
                reports = _render_reports(run_dir, manifest, manifest, sealed)
            manifest["reports"] = reports
            manifest["sealed_at"] = _now()
            manifest["files"] = file_hashes(run_dir)
            write_manifest(run_dir, manifest)
    write_index(run_dir.parent.parent)
    return manifest


def _render_reports(run_dir: Path, placed: dict, manifest: dict, sealed: set) -> list[str]:
    """Render each notebook not sealed before with its run header (``placed``: the manifest with its
    place in the chain); a report that cannot be rendered is noted in ``manifest``, never fatal."""
    reports = list(manifest.get("reports") or [])
    for notebook in sorted(run_dir.glob("*.ipynb")):
        if notebook.name in sealed and notebook.with_suffix(".html").name in sealed:
            continue
        try:
            name = render_report(notebook, placed).name
            reports += [name] if name not in reports else []
        except Exception as err:  # a report that cannot be rendered must not lose the run's evidence
            manifest.setdefault("report_errors", {})[notebook.name] = f"{type(err).__name__}: {err}"
    return sorted(reports)


def _place_of(manifest: dict) -> tuple:
    return manifest.get("sequence"), manifest.get("previous_manifest_sha256"), (manifest.get("ledger") or {}).get("entry")


def is_chain_head(run_dir: Path, added_ok: bool = False) -> bool:
    """Whether ``run_dir`` is its environment's newest sealed run and every file it sealed is
    unchanged (``added_ok``: files added since are allowed): the only case in which it may be
    sealed again without breaking the chain or laundering an altered file."""
    head = _chain_head(run_dir.parent)
    if head is None or head.path.resolve() != run_dir.resolve():
        return False
    problems = _verify_files(head)
    return not [p for p in problems if not (added_ok and p.endswith("was added after the run was sealed"))]


def file_hashes(run_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(run_dir)): _sha256(p.read_bytes())
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name not in (MANIFEST, f".{MANIFEST}.tmp")}


def git_commit(project_root: Path) -> str | None:
    """The project's commit, with '+dirty' when the work tree has changes; None outside git."""
    try:
        head = subprocess.run(["git", "-C", str(project_root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(project_root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except OSError:
        return None


# -- reading -----------------------------------------------------------------------------------------
@dataclass
class Run:
    env: str
    run_id: str
    path: Path
    manifest: dict
    manifest_sha256: str

    @property
    def sealed(self) -> bool:
        return "sealed_at" in self.manifest

    @property
    def sequence(self) -> int:
        return int(self.manifest.get("sequence") or 0)

    @property
    def status(self) -> str:
        return self.manifest.get("status", "unknown") if self.sealed else "incomplete"

    @property
    def mode(self) -> str:
        """``runner`` (``fkrunbook run``: papermill) or ``interactive`` (a notebook run in JupyterLab)."""
        return self.manifest.get("mode", "runner")


def load_runs(audit_dir: Path, env: str | None = None) -> list[Run]:
    """Every run folder (with a manifest) under audit/, newest first."""
    runs = []
    for env_dir in sorted(p for p in Path(audit_dir).glob("*") if p.is_dir()):
        if env and env_dir.name != env:
            continue
        for run_dir in sorted(p for p in env_dir.iterdir() if p.is_dir()):
            path = run_dir / MANIFEST
            if not path.exists():
                continue
            data = path.read_bytes()
            try:
                manifest = json.loads(data)
            except ValueError:
                manifest = {"status": "unreadable manifest"}
            runs.append(Run(env_dir.name, run_dir.name, run_dir, manifest, _sha256(data)))
    return sorted(runs, key=lambda r: (r.manifest.get("started_at") or "", r.run_id), reverse=True)


def run_table(runs: list[Run]) -> pd.DataFrame:
    return pd.DataFrame([{
        "run": r.run_id, "env": r.env, "status": r.status, "mode": r.mode, "operator": r.manifest.get("operator", ""),
        "started": r.manifest.get("started_at", ""),
        "phases": " ".join(f"{p['name']}:{p['status']}" for p in r.manifest.get("phases", [])),
    } for r in runs], columns=["run", "env", "status", "mode", "operator", "started", "phases"])


def find_run(audit_dir: Path, run_id: str) -> Run | None:
    return next((r for r in load_runs(audit_dir) if r.run_id == run_id), None)


def verify_archive(audit_dir: Path, target: str | None = None) -> tuple[list[str], int]:
    """Recompute every file hash and the chain. ``target``: a run id, an environment, or all.
    Return (problems, runs checked); each problem names the run and the file."""
    audit_dir = Path(audit_dir)
    all_runs = load_runs(audit_dir)
    envs = sorted({r.env for r in all_runs})
    single = next((r for r in all_runs if r.run_id == target), None)
    if target and not single and target not in envs:
        raise LookupError(target)
    problems, checked = [], 0
    for env in envs:
        if target and target != env and (not single or single.env != env):
            continue
        chain = sorted((r for r in all_runs if r.env == env and r.sealed), key=lambda r: (r.sequence, r.run_id))
        gap = 0  # runs of the chain sealed elsewhere (placed by the ledger): `archive verify --env` checks those
        for index, run in enumerate(chain):
            elsewhere = (run.manifest.get("ledger") or {}).get("previous_here") is False
            gap = run.sequence - index - 1 if elsewhere else gap
            if single and run is not single:
                continue
            checked += 1
            problems += _verify_files(run)
            expected_previous = chain[index - 1].manifest_sha256 if index else None
            if run.sequence != index + 1 + gap:
                problems.append(f"{env}/{run.run_id}: is number {run.sequence} in the chain but stands at "
                                f"{index + 1 + gap}: a run was removed or inserted out of order")
            elif not elsewhere and run.manifest.get("previous_manifest_sha256") != expected_previous:
                problems.append(f"{env}/{run.run_id}: previous_manifest_sha256 does not match the manifest of "
                                f"{chain[index - 1].run_id if index else 'nothing (first run)'}: the chain was "
                                "altered (a manifest edited, a run removed, or inserted out of order)")
    return problems, checked


def _verify_files(run: Run) -> list[str]:
    problems = []
    recorded = run.manifest.get("files") or {}
    actual = file_hashes(run.path)
    for name, digest in recorded.items():
        if name not in actual:
            problems.append(f"{run.env}/{run.run_id}: file {name} was removed")
        elif actual[name] != digest:
            problems.append(f"{run.env}/{run.run_id}: file {name} changed")
    for name in sorted(set(actual) - set(recorded)):
        problems.append(f"{run.env}/{run.run_id}: file {name} was added after the run was sealed")
    return problems


def write_index(audit_dir: Path) -> Path:
    """audit/index.html: every run (incomplete and interactive ones too), one table per environment,
    newest first, each with its place in the chain, phases and outcome, operator, times, commit,
    spec, plan and manifest sha256, and links to its manifest and reports. Self-contained."""
    audit_dir = Path(audit_dir)
    runs = load_runs(audit_dir)
    sections = []
    for env in sorted({r.env for r in runs}):
        mine = [r for r in runs if r.env == env]
        by_hash = {r.manifest_sha256: r for r in mine if r.sealed}
        chain = [r for r in mine if r.sealed]
        head = max(chain, key=lambda r: r.sequence, default=None)
        rows = "".join(_index_row(run, by_hash, head) for run in mine)
        summary = (f"{len(chain)} sealed run(s) in the chain; head #{head.sequence} {head.run_id}" if head
                   else "no sealed run yet") + (f"; {len(mine) - len(chain)} incomplete" if len(mine) > len(chain)
                                                else "")
        sections.append(f"<section id='env-{_e(env)}'><h2>{_e(env)} <small>{_e(summary)}</small></h2>"
                        "<table><thead><tr><th>chain</th><th>run</th><th>mode</th><th>outcome</th><th>phases</th>"
                        "<th>operator</th><th>started<br>ended</th><th>git commit</th><th>evidence</th></tr></thead>"
                        f"<tbody>{rows}</tbody></table></section>")
    envs = len({r.env for r in runs})
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>fkrunbook audit evidence: {len(runs)} run(s) in {envs} environment(s)</title><style>"
            "body{font-family:system-ui,sans-serif;margin:20px;color:#1f2328;font-size:13px}"
            "h1{font-size:22px;margin:0 0 6px}h2{font-size:18px;margin:26px 0 8px}h2 small{font-weight:400;"
            "color:#57606a;font-size:14px;margin-left:8px}p.lead{color:#57606a;max-width:70em;margin:0 0 8px}"
            "table{border-collapse:collapse;width:100%}th{text-align:left;background:#eef1f4;font-weight:600}"
            "td,th{border:1px solid #d0d7de;padding:4px 6px;vertical-align:top}"
            "tbody tr.main td{border-bottom:none}tbody tr.hashes td{border-top:none;padding-top:0;color:#57606a;"
            "font-size:12px}tr.hashes code{color:#1f2328}code{font-family:ui-monospace,monospace;font-size:12px}"
            ".outcome{font-weight:700;padding:1px 8px;border-radius:10px;color:#fff;background:#6b7280}"
            ".succeeded .outcome{background:#1a7f37}.failed .outcome{background:#cf222e}"
            ".incomplete .outcome{background:#bf8700}.cancelled .outcome{background:#8250df}"
            ".phase-failed{color:#cf222e;font-weight:600}.phase-cancelled{color:#8250df;font-weight:600}"
            ".phase-skipped,.phase-pending{color:#57606a}.dirty{color:#9a6700;font-weight:600}"
            "small{color:#57606a;font-size:12px}.hashes span{margin-right:18px;white-space:nowrap}"
            "tr.main td:nth-child(2),tr.main td:nth-child(3),tr.main td:nth-child(5),"
            "tr.main td:nth-child(7){white-space:nowrap}"
            "</style></head><body><h1>fkrunbook audit evidence</h1>"
            "<p class='lead'>Every run, newest first, per environment: sealed runs with their place in the "
            "environment's chain of manifests, incomplete ones (killed before sealing, or a JupyterLab phase "
            "still open) too. Mode <em>cli</em> is <code>fkrunbook run</code>, <em>interactive</em> a notebook "
            "run in JupyterLab. Times are UTC. <code>fkrunbook archive verify</code> recomputes every file's "
            "sha256 and the chain; each run's manifest sha256 below is what the next run links to.</p>"
            + ("".join(sections) or "<p>No runs yet.</p>")
            + f"<p class='lead'>Written {_e(_when(_now()))}.</p></body></html>\n")
    path = audit_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def _index_row(run: Run, by_hash: dict[str, Run], head: Run | None) -> str:
    """One run in audit/index.html: a row of what it did, then a row of its hashes."""
    m, base = run.manifest, f"{_e(run.env)}/{_e(run.run_id)}"
    mode = _e(MODE_LABELS.get(run.mode, run.mode)) + (f"<br><small>walkthrough {_e(m['walkthrough'])}</small>"
                                                      if m.get("walkthrough") not in (None, run.run_id) else "")
    if run.sealed:
        link = m.get("previous_manifest_sha256")
        previous = by_hash.get(link or "")
        ledger = m.get("ledger") or {}
        elsewhere = ledger.get("previous_run_id") if not ledger.get("previous_here", True) else None
        chain = (f"#{run.sequence}" + (" (head)" if head is run else "") + "<br><small>previous:<br>"
                 + (f"<code>{_e(previous.run_id)}</code>" if previous else
                    f"<code>{_e(elsewhere)}</code> (sealed elsewhere)" if link and elsewhere else
                    "missing" if link else "none (first)")
                 + (f"<br>ledger entry {_e(ledger['entry'])}" if ledger.get("entry") else
                    "<br>not in the ledger" if ledger.get("skipped") else "")
                 + "</small>")
    else:
        chain = "<small>not sealed</small>"
    phases = "<br>".join(f"<span class='phase-{_e(p.get('status', ''))}'>{_e(p['name'])}: {_e(p.get('status', '?'))}"
                         "</span>" for p in m.get("phases", [])) or "none"
    commit = m.get("git_commit")
    commit_cell = (f"<code title='{_e(commit)}'>{_e(commit.removesuffix('+dirty')[:12])}</code><br>"
                   + ("<span class='dirty'>dirty</span>" if commit.endswith("+dirty") else "clean")
                   if commit else "<span class='dirty'>not in git</span>" if "git_commit" in m else "not recorded")
    links = [f"<a href='{base}/{MANIFEST}'>manifest</a>"] + [
        f"<a href='{base}/{_e(r)}'>{_e(Path(r).stem)}</a>" for r in m.get("reports", [])]
    spec = (m.get("spec") or {}).get("sha256")
    hashes = [("manifest sha256", run.manifest_sha256 + ("" if run.sealed else " (unsealed)")),
              ("spec", spec or "none"), ("plan", m.get("plan_hash") or "none")]
    return (f"<tr class='main {_e(run.status)} {_e(run.mode)}' id='run-{_e(run.run_id)}'><td>{chain}</td>"
            f"<td><code>{_e(run.run_id)}</code></td><td>{mode}</td>"
            f"<td><span class='outcome'>{_e(run.status)}</span></td><td>{phases}</td>"
            f"<td>{_e(m.get('operator') or '')}<br><small>{_e(m.get('host') or '')}</small></td>"
            f"<td>{_e(_when(m.get('started_at')))}<br>{_e(_when(m.get('ended_at')))}</td><td>{commit_cell}</td>"
            f"<td>{'<br>'.join(links)}"
            f"{'' if m.get('reports') or run.sealed else '<br>(no report: incomplete)'}</td></tr>"
            f"<tr class='hashes {_e(run.status)}'><td></td><td colspan='8'>"
            + " ".join(f"<span>{label} <code>{_e(value)}</code></span>" for label, value in hashes) + "</td></tr>")


def _e(text) -> str:
    return html.escape(str(text))


def _chain_head(env_dir: Path) -> Run | None:
    sealed = [r for r in load_runs(env_dir.parent, env_dir.name) if r.sealed]
    return max(sealed, key=lambda r: r.sequence, default=None)


def plan_hash_of(manifest: dict) -> str | None:
    """The hash of the plan applied in this run, else of the plan previewed."""
    found = {p["name"]: (p.get("results") or {}).get("plan_hash") for p in manifest.get("phases", [])}
    return found.get("apply") or found.get("migration_preview")


@contextlib.contextmanager
def chain_lock(env_dir: Path):
    """Only one process links a run into an environment's chain at a time."""
    env_dir.mkdir(parents=True, exist_ok=True)
    with open(env_dir / ".chain.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
