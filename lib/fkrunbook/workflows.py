"""GitHub Actions workflows for a team's repository, written by ``fkrunbook init --ci github`` with
the team's own paths: the runbook on every pull request, orphan detection against staging daily."""
from __future__ import annotations

PR = """\
# On every pull request: the runbook's migration files are committed and unedited; the
# repository's own schema is built from its migrations on an embedded PostgreSQL (through
# fkrunbook's Supabase compatibility layer, as `supabase db reset` would build it); the FK audit
# gate runs on that schema; the whole runbook is rehearsed on it; the evidence is uploaded.
# (Written by `fkrunbook init --ci github`.)
name: fkrunbook
on:
  pull_request:
    paths:
      - "{supabase}/migrations/**"
      - "{runbook_dir}/**"
      - "fkrunbook.toml"
jobs:
  runbook:
    runs-on: ubuntu-latest
    timeout-minutes: 30
    steps:
{install}      - name: Migration files match the spec
        run: fkrunbook generate-migrations --check
      - name: The repository's schema, from its migrations
        run: fkrunbook local reset --from-migrations
      - name: FK audit gate
        run: fkrunbook audit --env local --format github
      - name: Whole runbook rehearsed on that schema
        run: fkrunbook run --env local --confirm
      - name: Evidence intact
        run: fkrunbook archive verify --local
      - name: Stop the local database
        if: always()
        run: fkrunbook local stop
      - name: Upload the evidence
        if: always()
        uses: actions/upload-artifact@v4
        with:
          name: fkrunbook-evidence
          path: {runbook_dir}/audit/
"""

SCHEDULED = """\
# Every morning: orphan detection and the FK audit against staging. Fails when orphans appear or an
# undeclared finding shows up; the evidence is uploaded either way. STAGING_DATABASE_URL is a
# repository secret (a read-only role is enough: both steps only read).
# The run continues the chain kept in the team's evidence store ([evidence] store in fkrunbook.toml),
# is published there and the store is verified. An s3:// store takes its keys from the two secrets
# below (for Supabase Storage: an S3 access key of the project); a git branch takes FKRUNBOOK_STORE
# (git+https://x-access-token:TOKEN@github.com/ORG/REPO.git#branch=fkrunbook-evidence) as a secret,
# or git's own credentials; with the default (a folder) there is nothing to set.
# (Written by `fkrunbook init --ci github`.)
name: fkrunbook orphan detection
on:
  schedule:
    - cron: "17 6 * * *"
  workflow_dispatch:
jobs:
  staging:
    runs-on: ubuntu-latest
    timeout-minutes: 30
    env:
      STAGING_DATABASE_URL: ${{{{ secrets.STAGING_DATABASE_URL }}}}
      AWS_ACCESS_KEY_ID: ${{{{ secrets.FKRUNBOOK_STORE_ACCESS_KEY_ID }}}}
      AWS_SECRET_ACCESS_KEY: ${{{{ secrets.FKRUNBOOK_STORE_SECRET_ACCESS_KEY }}}}
    steps:
{install}      - name: Continue the evidence store's chain
        run: fkrunbook archive pull --env staging
      - name: Orphan detection
        run: fkrunbook run --env staging --phase orphan_check --fail-on-orphans
      - name: FK audit
        if: always()
        run: fkrunbook audit --env staging --format github
      - name: Publish the evidence to the store
        if: always()
        run: fkrunbook archive publish --env staging
      - name: The store's evidence intact, checked against staging's ledger
        if: always()
        run: fkrunbook archive verify --env staging
      - name: Upload the evidence
        if: always()
        uses: actions/upload-artifact@v4
        with:
          name: fkrunbook-orphan-detection
          path: {runbook_dir}/audit/
"""


INSTALL = """\
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - name: Install fkrunbook
        run: pip install "{pip_spec}"
"""


def render_workflows(runbook_dir: str, supabase_dir: str, pip_spec: str) -> dict[str, str]:
    """File name -> text of each workflow, with the team's paths."""
    values = {"runbook_dir": runbook_dir, "supabase": supabase_dir, "install": INSTALL.format(pip_spec=pip_spec)}
    return {"fkrunbook-pr.yml": PR.format(**values), "fkrunbook-orphan-detection.yml": SCHEDULED.format(**values)}
