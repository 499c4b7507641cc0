#!/usr/bin/env bash
# Build the container image (Dockerfile, FROM scratch) from the context that
# scripts/release.sh stages in dist/container, then run it once (`atlas --version`).
#
# Usage: bash scripts/container.sh [TAG]     (default: atlas:<version>)
# The engine is $CONTAINER_ENGINE, else docker, else podman — whichever answers. With none
# (no engine installed, or a client without a daemon), the build is SKIPPED and the script
# says so and exits 0: the image's contents are still checked by scripts/check-static.sh,
# which runs the binary inside the staged root filesystem.
set -euo pipefail
cd "$(dirname "$0")/.."

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
tag="${1:-atlas:$version}"
context=dist/container
[[ -f "$context/Dockerfile" && -x "$context/rootfs/usr/local/bin/atlas" ]] \
    || { echo "container.sh: no build context in $context (run scripts/release.sh first)" >&2; exit 1; }

engine=""
reasons=()
for candidate in ${CONTAINER_ENGINE:-docker podman}; do
    if ! command -v "$candidate" >/dev/null 2>&1; then
        reasons+=("$candidate: not installed")
    elif ! out="$("$candidate" info 2>&1)"; then
        reasons+=("$candidate: $(tail -n1 <<<"$out")")
    else
        engine="$candidate"
        break
    fi
done
if [[ -z "$engine" ]]; then
    echo "SKIPPED container build: no working container engine on this machine (${reasons[*]})."
    echo "The build context is ready in $context; elsewhere: docker build -t $tag $context"
    exit 0
fi

echo "== $engine build -t $tag $context"
"$engine" build -t "$tag" "$context"
"$engine" run --rm "$tag" --version
"$engine" image inspect "$tag" --format 'image size: {{.Size}} bytes, user {{.Config.User}}'
