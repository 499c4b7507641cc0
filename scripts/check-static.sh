#!/usr/bin/env bash
# Check the static binary the way users run it. Given the container's root filesystem as
# scripts/release.sh stages it (dist/container/rootfs):
#   1. the binary is static (ldd) — its size is reported;
#   2. `atlas demo` runs inside that root filesystem (chroot: no library, no file of the
#      build machine), as the image's non-root user 65532;
#   3. in the same chroot, names resolve through DNS (a fixture DNS server, as Docker's
#      resolver would answer) and through /etc/hosts, and TLS verifies a private CA given
#      with SSL_CERT_FILE: `atlas init` and `atlas list` against the S3 test
#      server (scripts/s3-server.sh) behind a TLS front — and without the CA file the
#      connection is refused as a TLS failure.
# Steps 2 and 3 need root (chroot, a DNS server on port 53 of a loopback address). Without
# root they are SKIPPED, saying so, and the demo runs on the host instead.
#
# Usage: scripts/check-static.sh [ROOTFS]   (default: dist/container/rootfs)
set -euo pipefail
cd "$(dirname "$0")/.."

rootfs="${1:-dist/container/rootfs}"
bin="$rootfs/usr/local/bin/atlas"
[[ -x "$bin" ]] || { echo "check-static: no binary at $bin (run scripts/release.sh)" >&2; exit 1; }

fail() { echo "check-static: FAILED: $*" >&2; exit 1; }

echo "== static binary: $bin"
size=$(stat -c %s "$bin")
echo "size: $size bytes ($(awk "BEGIN { printf \"%.1f\", $size / 1048576 }") MiB)"
ldd_out="$(ldd "$bin" 2>&1 || true)"
echo "ldd: $ldd_out"
case "$ldd_out" in
    *"not a dynamic executable"* | *"statically linked"*) ;;
    *) fail "the binary is linked dynamically" ;;
esac
if command -v file >/dev/null; then file -b "$bin"; fi
"$bin" --version

work="$(mktemp -d /tmp/atlas-check-static.XXXXXX)"
fixture_pid=""
stop_s3=0
cleanup() {
    if [[ -n "$fixture_pid" ]]; then kill "$fixture_pid" 2>/dev/null || true; fi
    if [[ $stop_s3 -eq 1 ]]; then scripts/s3-server.sh stop >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

if [[ "$(id -u)" -ne 0 ]] || ! chroot / true 2>/dev/null; then
    echo "SKIPPED: the runs inside the image's root filesystem (chroot; DNS and TLS without" \
         "the build machine's libraries) need root; running the demo on the host instead"
    "$bin" demo --users 2 --messages-per-user 10 >/dev/null
    echo "demo on the host: ok"
    exit 0
fi

# The image's tree plus what a container engine adds at run time (/etc/hosts,
# /etc/resolv.conf) and a data directory owned by the image's user.
root="$work/root"
cp -a "$rootfs" "$root"
mkdir -p "$root/data" "$root/check"
chown 65532:65532 "$root/data"
chroot_bin="$(command -v chroot)"
# `atlas ARGS` in the root filesystem as the image's user, with only the variables given
# before the `--` (what `docker run -e` would pass).
atlas_in_root() {
    local vars=()
    while [[ "$1" != "--" ]]; do vars+=("$1"); shift; done
    shift
    env -i "${vars[@]}" "$chroot_bin" --userspec=65532:65532 "$root" /usr/local/bin/atlas "$@"
}

echo "== atlas demo in the image's root filesystem, as user 65532"
start=$(date +%s)
atlas_in_root HOME=/data XDG_DATA_HOME=/data TMPDIR=/tmp -- demo >"$work/demo.out" 2>&1 \
    || { cat "$work/demo.out" >&2; fail "atlas demo in the chroot"; }
tail -n 3 "$work/demo.out"
echo "demo: ok ($(( $(date +%s) - start )) s)"

echo "== DNS and TLS in the image's root filesystem"
# The shared S3 test server: reused when running, else started here and stopped at the end.
s3_was_running=0
if scripts/s3-server.sh status >/dev/null 2>&1; then s3_was_running=1; fi
eval "$(scripts/s3-server.sh start)"
if [[ $s3_was_running -eq 0 ]]; then stop_s3=1; fi
upstream="${ATLAS_TEST_S3_ENDPOINT#http://}"
# A private CA and a server certificate for two names: one answered by DNS, one by
# /etc/hosts.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=Atlas static check CA" -keyout "$work/ca.key" -out "$work/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=s3.atlas.svc.cluster.local" -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:s3.atlas.svc.cluster.local,DNS:s3-files.atlas.svc.cluster.local\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    >"$work/server.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
    -CAcreateserial -days 2 -extfile "$work/server.ext" -out "$work/server.pem" 2>/dev/null
cp "$work/ca.pem" "$root/check/ca.pem"

# A loopback address of its own for the DNS server (port 53 is all resolv.conf can name),
# so that two checks at once do not collide.
dns_ip="127.$(( RANDOM % 200 + 20 )).$(( RANDOM % 250 + 1 )).$(( RANDOM % 250 + 1 ))"
tls_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
python3 scripts/net-fixture.py --dns "$dns_ip:53" --name s3.atlas.svc.cluster.local=127.0.0.1 \
    --tls "127.0.0.1:$tls_port" --cert "$work/server.pem" --key "$work/server.key" \
    --upstream "$upstream" >"$work/fixture.out" 2>&1 &
fixture_pid=$!
for _ in $(seq 1 50); do
    grep -q ready "$work/fixture.out" 2>/dev/null && break
    kill -0 "$fixture_pid" 2>/dev/null || { cat "$work/fixture.out" >&2; fail "net-fixture.py did not start"; }
    sleep 0.1
done
printf 'nameserver %s\noptions timeout:2 attempts:1\n' "$dns_ip" >"$root/etc/resolv.conf"
printf '127.0.0.1 localhost\n127.0.0.1 s3-files.atlas.svc.cluster.local\n' >"$root/etc/hosts"

bucket="atlas-static-check-$(date +%s)-$RANDOM"
s3_env=(HOME=/data XDG_DATA_HOME=/data TMPDIR=/tmp
    ATLAS_TENANT_ID=contoso.onmicrosoft.com
    "ATLAS_ENCRYPTION_PASSPHRASE=static check passphrase, not a secret"
    ATLAS_KDF=scrypt-n14
    ATLAS_S3_ACCESS_KEY=test-access ATLAS_S3_SECRET_KEY=test-secret
    "ATLAS_S3_BUCKET=$bucket" ATLAS_S3_FORCE_PATH_STYLE=true)

# Without the private CA: refused, and named as a TLS problem at once.
if atlas_in_root "${s3_env[@]}" "ATLAS_S3_ENDPOINT=https://s3.atlas.svc.cluster.local:$tls_port" -- \
    list >"$work/untrusted.out" 2>&1; then
    cat "$work/untrusted.out" >&2
    fail "a certificate of an unknown CA was accepted"
fi
grep -qi "tls\|certificate" "$work/untrusted.out" \
    || { cat "$work/untrusted.out" >&2; fail "an untrusted certificate was not reported as a TLS failure"; }
echo "untrusted CA refused: $(grep -i -m1 "tls\|certificate" "$work/untrusted.out")"

# With it, through a name only DNS knows …
atlas_in_root "${s3_env[@]}" "ATLAS_S3_ENDPOINT=https://s3.atlas.svc.cluster.local:$tls_port" \
    SSL_CERT_FILE=/check/ca.pem -- --json init >"$work/init.out" 2>&1 \
    || { cat "$work/init.out" >&2; fail "atlas init over TLS via a DNS name"; }
echo "DNS name + private CA: $(head -c 200 "$work/init.out")"
# … and a name only /etc/hosts knows.
atlas_in_root "${s3_env[@]}" "ATLAS_S3_ENDPOINT=https://s3-files.atlas.svc.cluster.local:$tls_port" \
    SSL_CERT_FILE=/check/ca.pem -- --json list >"$work/list.out" 2>&1 \
    || { cat "$work/list.out" >&2; fail "atlas list over TLS via /etc/hosts"; }
echo "/etc/hosts name + private CA: $(head -c 200 "$work/list.out")"
echo "check-static: ok"
