"""A short soak (the 20-run one is bench/soak.py): the whole runbook three times in a row against the
same local database leaks no connection, server process, child process, runtime or temp file.

The soak counts only what the runbook owns (its own server, its child processes, a runtime folder
and a temp folder of its own, its run folders), so other programs writing to the system's temp
folder at the same moment cannot move the figures."""
import importlib.util

from fkrunbook.environment import get_environment
from fkrunbook.server import stop_server

from ..conftest import PROJECT, copy_project


def test_three_runs_in_a_row_leak_nothing(tmp_path):
    spec = importlib.util.spec_from_file_location("soak", PROJECT / "bench" / "soak.py")
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    project = copy_project(tmp_path / "project")
    try:
        figures = soak.soak(3, project, rows=300)
    finally:
        stop_server(get_environment("local", project / "runbooks" / "environments.yaml").data_dir)
    assert [f["status"] for f in figures] == ["succeeded"] * 3
    assert all(f["orphans_restored"] > 0 for f in figures)  # each run had the whole job to do
    assert all(f["fkrunbook_connections"] == 0 for f in figures)
    assert all(f["server_processes"] > 0 for f in figures)  # the count really looks at the soak's server
    assert all(f["run_files"] > 6 for f in figures)  # ... and at each run's evidence
    assert [f["temp_files"] for f in figures] == [0, 0, 0]  # kernel connection files and IPC sockets removed
    for key in ("child_processes", "runtime_files", "run_files"):
        assert len({f[key] for f in figures}) == 1, (key, [f[key] for f in figures])
    assert figures[-1]["rss_mb"] - figures[0]["rss_mb"] < 100
