#!/usr/bin/env bash
# The test command (README: `sudo ./tools/test.sh`): set-up if needed, then
# lint (ruff), types (mypy) and every test layer (pytest). Extra arguments go
# to pytest, e.g. `sudo ./tools/test.sh tests/unit -x`.
# Integration tests need root: each creates and deletes its own network namespace.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
.ci/setup.sh || exit 1

status=0
echo "== ruff check"
.venv/bin/ruff check . || status=1
echo "== mypy"
.venv/bin/mypy || status=1
echo "== pytest"
.venv/bin/python -m pytest -q "$@"
rc=$?
if ((rc == 5)); then
    echo "pytest collected no tests: that is a failure" >&2
fi
((rc == 0)) || status=1

if ((status == 0)); then echo "== all passed"; else echo "== FAILED" >&2; fi
exit "$status"
