# The Atlas container image: the static binary, CA certificates and a non-root user on an
# empty base — nothing else to patch, nothing for an attacker to use.
#
# Build it with `bash scripts/container.sh` (after `bash scripts/release.sh`, which stages
# the build context in dist/container: this file, rootfs/ and data/). By hand:
#   docker build -t atlas:latest dist/container
#
# Run (see README "Install" and docs/OPERATIONS.md):
#   docker run --rm --env-file atlas.env -v atlas-data:/data atlas:latest backup
# with the repository on S3 (ATLAS_S3_* in atlas.env) or on the volume (the default:
# /data/atlas/<tenant id>). The root filesystem can be read-only: Atlas writes only under
# /data and /tmp.
FROM scratch

# /usr/local/bin/atlas, /etc/ssl/certs/ca-certificates.crt, /etc/passwd and /etc/group (the
# user atlas, 65532), /etc/nsswitch.conf (hosts: files dns), /tmp (1777).
COPY rootfs/ /
# The data directory belongs to the user: local repositories, caches, reports.
COPY --chown=65532:65532 data/ /data/

USER 65532:65532
WORKDIR /data
ENV HOME=/data \
    XDG_DATA_HOME=/data \
    TMPDIR=/tmp \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
VOLUME ["/data"]

ENTRYPOINT ["/usr/local/bin/atlas"]
CMD ["--help"]

LABEL org.opencontainers.image.title="atlas" \
      org.opencontainers.image.description="Backup and restore of Microsoft 365 mailboxes through Microsoft Graph" \
      org.opencontainers.image.licenses="Apache-2.0"
