"""The benchmarks still run (at toy sizes): each is a script nobody runs in the suite otherwise, and
a benchmark whose own consistency check broke would only be found when someone needs its figures.
Their figures are not checked here (benchmarks print them; a timed test would flake)."""
import json
import subprocess
import sys

import pytest

from .conftest import PROJECT

RUNS = {
    "generate_data.py": ["--rows", "2000"],
    "team_data.py": ["--rows", "200", "--baseline", "50"],
    "polymorphic.py": ["--events", "5000"],
    "apply_stall.py": ["--rows", "5000", "--lock-holder", "1"],
    "long_steps.py": ["--rows", "20000", "--calibrate-rows", "10000"],
}


@pytest.mark.parametrize("script", RUNS)
def test_benchmark_runs_and_its_own_checks_pass(script):
    result = subprocess.run([sys.executable, str(PROJECT / "bench" / script), *RUNS[script]], cwd=PROJECT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    if script in ("polymorphic.py", "apply_stall.py", "long_steps.py"):  # their last line is one JSON object
        assert isinstance(json.loads(last), dict)
    if script == "apply_stall.py":  # the apply succeeded against the holder; the holder-only figures are there
        figures = json.loads(last)
        assert figures["lock_holder_s"] == 1 and figures["lock_holder_stall_ms"] >= 500  # the held row's writer waited
        assert figures["runbook_lock_timeouts"] >= 1 and figures["noise_floor_max_ms"] > 0
