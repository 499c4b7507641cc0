#!/usr/bin/env bash
# The whole test suite, with the S3 tests running for real: starts the local S3 server
# (moto, see scripts/s3-server.sh), runs `cargo test --workspace` (extra arguments are
# passed on), and stops the server again — unless one was already running, which is left
# as it was (another shell may be using it).
set -euo pipefail
cd "$(dirname "$0")/.."

if scripts/s3-server.sh status >/dev/null 2>&1; then
    eval "$(scripts/s3-server.sh start)"
else
    eval "$(scripts/s3-server.sh start)"
    trap 'scripts/s3-server.sh stop' EXIT
fi
echo "S3 tests use the server at ${ATLAS_TEST_S3_ENDPOINT}" >&2
# Python parsers of the export read-back test (atlas-graph tests/it/export_readback.rs),
# installed when missing; .ci/run installs them too.
python3 -c 'import icalendar, vobject' 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        icalendar==7.3.2 vobject==0.9.9
cargo test --workspace "$@"
