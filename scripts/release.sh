#!/usr/bin/env bash
# Build what users install: a static x86_64 Linux binary (glibc linked in, so it runs on
# any x86_64 Linux, RHEL 8 and Ubuntu 20.04 included, and in an empty container), its
# manual pages and shell completions, one archive with a checksum, and the container build
# context — then check the binary (scripts/check-static.sh).
#
# Usage:
#   bash scripts/release.sh                    # profile `dist` (LTO, one codegen unit, stripped)
#   bash scripts/release.sh --profile release  # the quicker optimized build, also static
#   bash scripts/release.sh --profile ci-static  # what CI builds: static, stripped, no LTO
#   bash scripts/release.sh --no-check         # build and package only
#
# Output, in dist/:
#   atlas-<version>-x86_64-linux-static/        atlas, man/*.1, completions/, README.md, docs/
#   atlas-<version>-x86_64-linux-static.tar.gz  the same, archived
#   atlas-<version>-x86_64-linux-static.tar.gz.sha256
#   container/                                  Dockerfile + rootfs/ for scripts/container.sh
#
# Why the gnu target with crt-static rather than musl: this toolchain has no musl target
# installed and the gnu one links statically as is; glibc's resolver and user lookups
# (files and dns, all Atlas uses) are built into a static glibc, which check-static.sh proves
# in a chroot without any library. `--target` is given explicitly so that RUSTFLAGS apply to
# the binary only, not to build scripts and proc macros (which cannot be static).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=dist
check=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --profile=*) profile="${1#--profile=}"; shift ;;
        --no-check) check=0; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "release.sh: unknown argument $1 (see --help)" >&2; exit 3 ;;
    esac
done

target=x86_64-unknown-linux-gnu
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
name="atlas-${version}-x86_64-linux-static"
dist=dist
stage="$dist/$name"

echo "== build: profile $profile, target $target, static (crt-static)"
start=$(date +%s)
# getrandom_backend: the `getrandom` crate finds glibc's getrandom() with dlsym, which a
# static binary cannot do, and would fall back to reading /dev/urandom — absent from an
# empty root filesystem; this makes it call the kernel's getrandom system call directly.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" \
    cargo build --locked --profile "$profile" --target "$target" -p atlas-cli --bin atlas
built="${CARGO_TARGET_DIR:-target}/$target/$profile/atlas"
echo "build took $(( $(date +%s) - start )) s"

echo "== package: $stage"
rm -rf "$stage" "$dist/$name.tar.gz" "$dist/$name.tar.gz.sha256" "$dist/container"
mkdir -p "$stage/completions" "$stage/docs"
cp "$built" "$stage/atlas"
"$stage/atlas" man "$stage/man" >/dev/null
"$stage/atlas" completions bash >"$stage/completions/atlas.bash"
"$stage/atlas" completions zsh >"$stage/completions/_atlas"
"$stage/atlas" completions fish >"$stage/completions/atlas.fish"
"$stage/atlas" completions powershell >"$stage/completions/_atlas.ps1"
"$stage/atlas" completions elvish >"$stage/completions/atlas.elv"
cp README.md "$stage/"
cp docs/*.md "$stage/docs/"
cp -r deploy "$stage/deploy" 2>/dev/null || true
tar -C "$dist" -czf "$dist/$name.tar.gz" "$name"
(cd "$dist" && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")

echo "== container build context: $dist/container"
# What the image holds, laid out here so that check-static.sh can run the binary in exactly
# this tree (chroot) on machines without a container engine.
rootfs="$dist/container/rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp" "$dist/container/data"
cp "$built" "$rootfs/usr/local/bin/atlas"
chmod 1777 "$rootfs/tmp"
# Atlas also has Mozilla's roots built in; the bundle is for SSL_CERT_FILE users and
# tools that expect it, and the place an image derived from this one adds a private CA.
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
else
    echo "release.sh: no /etc/ssl/certs/ca-certificates.crt on this machine (install ca-certificates)" >&2
    exit 1
fi
printf 'root:x:0:0:root:/root:/sbin/nologin\natlas:x:65532:65532:atlas:/data:/sbin/nologin\n' \
    >"$rootfs/etc/passwd"
printf 'root:x:0:\natlas:x:65532:\n' >"$rootfs/etc/group"
# Without this file glibc asks DNS before /etc/hosts and never reads the file when DNS
# answers "no such name" (its default is `dns [!UNAVAIL=return] files`).
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
cp Dockerfile "$dist/container/Dockerfile"

size=$(stat -c %s "$built")
echo "binary: $built, $size bytes ($(( size / 1024 / 1024 )) MiB)"
echo "archive: $dist/$name.tar.gz ($(stat -c %s "$dist/$name.tar.gz") bytes)"

if [[ $check -eq 1 ]]; then
    bash scripts/check-static.sh "$dist/container/rootfs"
fi
