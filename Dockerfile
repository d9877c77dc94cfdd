# mrs container image: the static musl binary alone in a FROM scratch image.
#
#   docker build --build-arg MRS_GIT_REV=$(git rev-parse --short=12 HEAD) -t mrs .
#       (or: buildah bud --format docker --build-arg ... -t mrs .)
#   docker run -d --name mrs -p 587:587 -p 465:465 -p 8080:8080 \
#       -v mrs-spool:/var/spool/mrs -e MRS_USERS_FILE=/run/secrets/mrs-users ... mrs
#
# ./build.sh docker-test (test/docker/test.sh) builds this file for real with
# buildah, checks the result and runs it with podman (runc) as 65534 with a
# read-only root and a spool volume.  configs/ has docker compose and
# Kubernetes examples.
#
# What the image holds, and nothing else (no shell, no libc, no passwd file):
#   /mrs                                  the binary (runs as 65534:65534)
#   /etc/ssl/certs/ca-certificates.crt    Debian's CA bundle, to verify the
#                                         smarthost (MRS_SMARTHOST_CA_FILE
#                                         overrides it)
#   /var/spool/mrs/                       the spool, empty, owned by 65534,
#                                         mode 0700; declared a VOLUME so that
#                                         queued mail never lives in the
#                                         container's own layer
#
# Ports: the binary's defaults (587, 465, 8080) are kept, although the
# process is not root: Docker (20.10 and later) and Podman set
# net.ipv4.ip_unprivileged_port_start=0 in a container's own network
# namespace, so a non-root process may bind them there.  Where the runtime
# does not (Kubernetes on CRI-O or containerd 1.x, or --network host), set
# MRS_SUBMISSION_LISTEN=:2587 and MRS_SUBMISSIONS_LISTEN=:2465 and map the
# ports outside, as configs/kubernetes/ does.  Adding NET_BIND_SERVICE does
# not help a non-root process: it would not be in its effective set.

# ---- build stage ------------------------------------------------------------
# Fully qualified so that buildah/podman do not have to resolve a short name.
FROM docker.io/library/debian:trixie-slim AS build
ARG DEBIAN_FRONTEND=noninteractive

# The toolchain that build.sh asks for (build_pkgs in build.sh), in a layer of
# its own so that a change under src/ does not download it again.  build.sh
# installs whatever this list lacks, so it is an optimisation, not a second
# source of truth.  binutils: on trixie musl-tools does not pull in `as`.
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
        musl-tools musl-dev gcc make binutils autoconf automake libtool file \
        ca-certificates bzip2 xz-utils dpkg-dev patch \
 && rm -rf /var/lib/apt/lists/*

# Only what build.sh needs (.dockerignore keeps build/, .deps/, var/, .git
# and test/ out of the context).  build.sh fetches the pinned mbedTLS and
# libsodium as Debian source packages from the mirror in this stage's own apt
# sources, checks their SHA-256 against vendor/pins and links build/mrs.
WORKDIR /src
COPY build.sh Makefile VERSION ./
COPY vendor/ vendor/
COPY src/ src/
# The revision that `mrs version` and mrs_build_info{revision} report.  .git
# is not in the context, so the Makefile's `git rev-parse` finds nothing
# here: pass it in, as test/docker/test.sh does:
#   --build-arg MRS_GIT_REV=$(git rev-parse --short=12 HEAD)
# build.sh hands it to make as GIT_REV.  Declared here, after the toolchain
# layer, so that a new commit does not invalidate that layer.
ARG MRS_GIT_REV=unknown
RUN MRS_GIT_REV="$MRS_GIT_REV" ./build.sh && build/mrs version

# The final image's tree, laid out here with the modes it must have.  The
# spool is a separate tree: it is copied with --chown (a COPY from another
# stage does not keep owners everywhere).
RUN install -d -m 0755 /image/etc/ssl/certs /image/var/spool \
 && install -m 0755 build/mrs /image/mrs \
 && install -m 0644 /etc/ssl/certs/ca-certificates.crt /image/etc/ssl/certs/ \
 && install -d -m 0700 /spool/mrs

# ---- final image ------------------------------------------------------------
FROM scratch
COPY --from=build /image/ /
# /var/spool exists already (root-owned), so only mrs/ takes the owner.
COPY --from=build --chown=65534:65534 /spool/ /var/spool/

# The spool path is the binary's default too; it is set here so that
# `docker inspect` shows it and it matches the VOLUME.
ENV MRS_SPOOL_DIR=/var/spool/mrs
VOLUME ["/var/spool/mrs"]

USER 65534:65534
EXPOSE 587 465 8080
# `mrs healthcheck` GETs /healthz on MRS_HEALTH_LISTEN's port on loopback
# (default :8080); with MRS_HEALTH_LISTEN=off it reports unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/mrs", "healthcheck"]
ENTRYPOINT ["/mrs"]
CMD ["serve"]
