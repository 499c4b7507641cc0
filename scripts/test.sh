#!/usr/bin/env bash
# The whole test suite, with the S3 tests running for real: starts the local S3 server
# (moto, see scripts/s3-server.sh), installs the Python packages the tests use when missing,
# runs `cargo test --workspace` (extra arguments are passed on), and stops the server again —
# unless one was already running, which is left as it was (another shell may be using it).
set -euo pipefail
cd "$(dirname "$0")/.."

# Python packages the tests read Atlas's output with, installed when missing so that this
# script works on a fresh machine (.ci/run installs the same versions up front):
# jsonschema checks every --json document against docs/schemas/, prometheus_client parses
# the --metrics-file output, kubernetes-validate checks deploy/kubernetes against the
# Kubernetes API schemas offline. (moto, the S3 server, is installed by scripts/s3-server.sh.)
for tool in jsonschema==4.26.0 prometheus_client==0.26.0 kubernetes-validate==1.37.0; do
    module="${tool%%==*}"
    module="${module//-/_}"
    if ! python3 -c "import ${module}" 2>/dev/null; then
        echo "installing ${tool} from PyPI (used by the tests)" >&2
        python3 -m pip install --quiet --disable-pip-version-check "${tool}" >&2 \
            || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "${tool}" >&2
    fi
done

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
