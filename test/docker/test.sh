#!/usr/bin/env bash
# test/docker/test.sh — build the Dockerfile for real and check the image
# (`./build.sh docker-test`).  Needs root; no Docker engine or registry.
#
#   1. installs buildah and debootstrap when missing (apt-get);
#   2. makes a Debian trixie minbase root with debootstrap from the mirror of
#      this machine's own apt sources, cached in .deps/docker/trixie-rootfs
#      (git-ignored; `rm -rf .deps/docker` refreshes it);
#   3. imports it as the local image docker.io/library/debian:trixie-slim,
#      into a private, temporary buildah store (--root/--runroot under
#      /var/tmp) so that nothing else on the machine is touched or reused;
#   4. `buildah bud --isolation chroot --pull=never --format docker`: chroot
#      isolation needs no container runtime and creates no network bridge,
#      the docker format keeps HEALTHCHECK;
#   5. checks the image config, its file list, owners and modes, runs
#      `mrs version` in it as 65534:65534 (it must report the commit, passed
#      in as the build argument MRS_GIT_REV) and, once `mrs serve` exists,
#      serves on loopback and answers the image's HEALTHCHECK command;
#   6. runs the image with a real OCI runtime: podman with runc (installed
#      when missing), on the same private store, with a private
#      containers.conf and registries.conf, --pull=never, as 65534 with a
#      read-only root and a spool volume (test/docker/podman_run.py: ready,
#      healthcheck, a message delivered to a sink on the host, podman stop,
#      a second container resumes the queue).
# Every container, volume, image and mount it made is removed at the end,
# with the private store; only the cached root directory stays.
#
# Prints "PASS docker/<check>" or "FAIL docker/<check>: why" per check and
# ends with "docker: N passed, M failed" (test/run-all.sh adds these up).
set -uo pipefail

TOP=$(cd "$(dirname "$0")/../.." && pwd)
cd "$TOP" || exit 1

CACHE="$TOP/.deps/docker"
ROOTFS="$CACHE/trixie-rootfs"
BASE_IMAGE=docker.io/library/debian:trixie-slim
TAG=localhost/mrs:docker-test
DEBOOTSTRAP_TIMEOUT_S=1200
BUILD_TIMEOUT_S=2400
SERVE_WAIT_S=20
PODMAN_TIMEOUT_S=600
# the podman part's containers are $PODMAN_NAME-version, -1 and -2, its
# volume $PODMAN_NAME-spool (all in the private store)
PODMAN_NAME=mrs-docker-test
# The revision the image's binary must report: .git is not in the build
# context, so it goes in as a build argument (the Makefile's format).
GIT_REV=$(git -C "$TOP" rev-parse --short=12 HEAD 2>/dev/null) || GIT_REV=unknown

passed=0
failed=0
pass() { echo "PASS docker/$1"; passed=$((passed + 1)); }
fail() { echo "FAIL docker/$1${2:+: $2}"; failed=$((failed + 1)); }
note() { printf 'docker-test: %s\n' "$*" >&2; }
check() { # check NAME WHY COMMAND... — PASS when COMMAND succeeds
    local name=$1 why=$2; shift 2
    if "$@"; then pass "$name"; else fail "$name" "$why"; fi
}

t_start=$SECONDS
timing=()
timed() { timing+=("$1 $((SECONDS - $2))s"); }

WORK=""
B=()
P=()
made_rcd=0
serve_pid=""
# buildah keeps a blob-info cache in /var/lib/containers/cache even with a
# private store; it is removed at the end when this run created it.  The
# same for runc's state directory /run/runc (when empty).  Both are looked
# at once this run holds the lock (below): another run in another work tree
# (.deps is shared) may have made them and be about to remove them.
had_var_lib_containers=1
had_run_runc=1

cleaned=0
cleanup() {
    [ $cleaned = 1 ] && return 0
    cleaned=1
    set +e
    if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then
        kill -KILL "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null
    fi
    # podman first: its containers use the image buildah removes below
    if [ ${#P[@]} -gt 0 ]; then
        local c
        for c in "$PODMAN_NAME-version" "$PODMAN_NAME-1" "$PODMAN_NAME-2"; do
            "${P[@]}" container exists "$c" 2>/dev/null && "${P[@]}" rm --force --time 0 "$c" >/dev/null 2>&1
        done
        "${P[@]}" volume exists "$PODMAN_NAME-spool" 2>/dev/null &&
            "${P[@]}" volume rm --force "$PODMAN_NAME-spool" >/dev/null 2>&1
    fi
    if [ ${#B[@]} -gt 0 ]; then
        "${B[@]}" umount --all >/dev/null 2>&1
        "${B[@]}" rm --all >/dev/null 2>&1
        "${B[@]}" rmi --all --force >/dev/null 2>&1
    fi
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        unmount_under "$WORK"
        rm -rf --one-file-system "$WORK"
    fi
    unmount_under "$ROOTFS.tmp"
    if [ $had_var_lib_containers = 0 ] && [ -d /var/lib/containers ] &&
       [ "$(cd /var/lib/containers && find . -mindepth 1 | sort | tr '\n' ' ')" = "./cache ./cache/blob-info-cache-v1.boltdb " ]; then
        rm -rf /var/lib/containers
    fi
    [ $had_run_runc = 0 ] && [ -d /run/runc ] && rmdir /run/runc 2>/dev/null
    [ $made_rcd = 1 ] && rm -f /usr/sbin/policy-rc.d
}

# unmount_under DIR — unmount whatever is mounted below DIR, deepest first
# (a killed debootstrap or buildah can leave proc, sysfs or overlay mounts).
unmount_under() {
    local m
    awk -v d="$1/" 'index($2 "/", d) == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null; done
}

finish() {
    cleanup
    timed total "$t_start"
    note "timing: ${timing[*]}"
    echo "docker: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}
trap 'fail interrupted "signal"; finish' INT TERM
trap cleanup EXIT

# apt_uris — every archive URI of this machine's apt sources, one-line and
# deb822 formats alike.  apt_mirror picks the main archive, as build.sh's
# apt_mirror() does; apt_security_mirror the security archive.  Never
# hard-coded, so no repo file names a mirror.
apt_uris() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] && awk '$1=="deb" || $1=="deb-src" { for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] && awk 'tolower($1)=="uris:" { for (i=2;i<=NF;i++) print $i }' "$f"
    done
    return 0
}
apt_mirror() { local u; u=$(apt_uris | grep -v -- '-security' | head -n1); [ -n "$u" ] && echo "${u%/}"; }
apt_security_mirror() { local u; u=$(apt_uris | grep -- '-security' | head -n1); [ -n "$u" ] && echo "${u%/}"; }

# --- 1. tools ----------------------------------------------------------------

install_tools() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    note "installing ${missing[*]}"
    # Package scripts must not start daemons.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_rcd=1
    fi
    apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    local rc=$?
    [ $made_rcd = 1 ] && rm -f /usr/sbin/policy-rc.d && made_rcd=0
    return $rc
}

if [ "$(id -u)" != 0 ]; then
    fail root "needs root (buildah, debootstrap, chroot)"; finish
fi
t=$SECONDS
install_tools buildah debootstrap || { fail tools "apt-get install buildah debootstrap failed"; finish; }
timed tools "$t"

# --- 2. the trixie root, cached ----------------------------------------------

make_rootfs() {
    local mirror
    [ -x "$ROOTFS/usr/bin/apt-get" ] && [ -f "$ROOTFS.done" ] && { note "re-using $ROOTFS"; return 0; }
    mirror=$(apt_mirror) || { echo "no Debian mirror in this machine's apt sources"; return 1; }
    note "debootstrap --variant=minbase trixie from $mirror (log: $CACHE/debootstrap.log)"
    unmount_under "$ROOTFS.tmp"
    rm -rf --one-file-system "$ROOTFS" "$ROOTFS.tmp" "$ROOTFS.done"
    if ! timeout -k 10 $DEBOOTSTRAP_TIMEOUT_S debootstrap --variant=minbase trixie "$ROOTFS.tmp" "$mirror" \
            > "$CACHE/debootstrap.log" 2>&1; then
        tail -n 15 "$CACHE/debootstrap.log"
        unmount_under "$ROOTFS.tmp"
        return 1
    fi
    unmount_under "$ROOTFS.tmp"
    mv "$ROOTFS.tmp" "$ROOTFS" && date -u +%FT%TZ > "$ROOTFS.done"
}

mkdir -p "$CACHE"
t=$SECONDS
exec 9> "$CACHE/lock"
flock -w $DEBOOTSTRAP_TIMEOUT_S 9 || { fail rootfs "another docker-test holds $CACHE/lock"; finish; }
[ -e /var/lib/containers ] || had_var_lib_containers=0
[ -e /run/runc ] || had_run_runc=0
if why=$(make_rootfs); then pass rootfs; else fail rootfs "debootstrap failed: $why"; finish; fi
timed rootfs "$t"

# --- 3. a private store, the base image imported ------------------------------

# With the lock held no other run is active: a store left by a run that was
# killed outright is stale.
for stale in /var/tmp/mrs-docker-test.*; do
    [ -d "$stale" ] || continue
    note "removing the stale store $stale"
    unmount_under "$stale"; rm -rf --one-file-system "$stale"
done
WORK=$(mktemp -d /var/tmp/mrs-docker-test.XXXXXX)
driver=overlay
# overlay cannot stack on overlay; vfs works anywhere (slower).
case $(stat -f -c %T "$WORK") in overlay*|fuse*) driver=vfs ;; esac
B=(buildah --root "$WORK/root" --runroot "$WORK/run" --storage-driver "$driver")

# APT_FORMAT: how the imported base image lists its apt sources.  deb822
# (default) is what the real debian:trixie-slim image has: one
# /etc/apt/sources.list.d/debian.sources and no sources.list.  oneline keeps
# the /etc/apt/sources.list that debootstrap wrote.  build.sh reads both.
APT_FORMAT=${DOCKER_TEST_APT_FORMAT:-deb822}

import_base() {
    local ctr mnt arch mirror sec keyring=/usr/share/keyrings/debian-archive-keyring.pgp
    arch=$(dpkg --print-architecture)
    ctr=$("${B[@]}" from --quiet scratch) || return 1
    mnt=$("${B[@]}" mount "$ctr") || return 1
    # A container image has an empty /dev, /proc and /sys: the runtime
    # provides them, and resolv.conf and hostname too.
    tar -C "$ROOTFS" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        --exclude=./etc/resolv.conf --exclude=./etc/hostname -cf - . | tar -C "$mnt" -xpf - || return 1
    case $APT_FORMAT in
    deb822)
        mirror=$(apt_mirror) && sec=$(apt_security_mirror) || sec=""
        [ -n "$mirror" ] || return 1
        rm -f "$mnt/etc/apt/sources.list"
        {
            printf 'Types: deb\nURIs: %s\nSuites: trixie trixie-updates\nComponents: main\nSigned-By: %s\n' "$mirror" "$keyring"
            [ -z "$sec" ] || printf '\nTypes: deb\nURIs: %s\nSuites: trixie-security\nComponents: main\nSigned-By: %s\n' "$sec" "$keyring"
        } > "$mnt/etc/apt/sources.list.d/debian.sources"
        ;;
    oneline) ;;
    *) echo "DOCKER_TEST_APT_FORMAT must be deb822 or oneline"; return 1 ;;
    esac
    "${B[@]}" umount "$ctr" >/dev/null || return 1
    "${B[@]}" config --os linux --arch "$arch" --cmd bash \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr" || return 1
    "${B[@]}" commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null
}
t=$SECONDS
if import_base >"$WORK/import.log" 2>&1; then pass "import_base_$APT_FORMAT"
else fail import_base "$(tail -n 3 "$WORK/import.log" | tr '\n' ' ')"; finish; fi
timed import "$t"

# --- 4. the build context (.dockerignore), then the real build -----------------

# A throw-away Dockerfile that copies the whole context into an empty image
# shows what the real build can see: .dockerignore must keep the build's
# inputs and drop build/, .deps/, var/, .git and test/.
check_context() {
    local ctr mnt want got
    printf 'FROM scratch\nCOPY . /ctx/\n' > "$WORK/Context.Dockerfile"
    "${B[@]}" bud --quiet --isolation chroot --pull=never -f "$WORK/Context.Dockerfile" \
        -t localhost/mrs-context:docker-test . >/dev/null || { echo "bud failed"; return 1; }
    ctr=$("${B[@]}" from --quiet --pull-never localhost/mrs-context:docker-test) || return 1
    mnt=$("${B[@]}" mount "$ctr") || return 1
    got=$(cd "$mnt/ctx" && ls -A | sort | tr '\n' ' ')
    want="Makefile VERSION build.sh src vendor "
    "${B[@]}" rm "$ctr" >/dev/null; "${B[@]}" rmi localhost/mrs-context:docker-test >/dev/null
    [ "$got" = "$want" ] || { echo "context holds '$got', expected '$want'"; return 1; }
}
if why=$(check_context 2>&1); then pass context; else fail context "$why"; fi

t=$SECONDS
note "buildah bud (log: $WORK/build.log, copied to $CACHE/build.log)"
note "revision passed into the build: MRS_GIT_REV=$GIT_REV"
timeout -k 10 $BUILD_TIMEOUT_S "${B[@]}" bud --isolation chroot --pull=never --format docker --layers=false \
    --build-arg "MRS_GIT_REV=$GIT_REV" -t "$TAG" -f Dockerfile . > "$WORK/build.log" 2>&1
rc=$?
cp "$WORK/build.log" "$CACHE/build.log"
timed build "$t"
if [ $rc -ne 0 ]; then
    tail -n 30 "$WORK/build.log"
    fail build "buildah bud exited $rc (full log: .deps/docker/build.log)"; finish
fi
pass build

# --- 5. the image config ------------------------------------------------------

# buildah 1.28's --format has no json function; %q prints Go-quoted values
# (["/mrs"], "65534:65534") that compare exactly.
cfg() { "${B[@]}" inspect --type image --format "{{printf \"%q\" .Docker.Config.$1}}" "$TAG" 2>&1; }
expect_cfg() { # expect_cfg CHECK FIELD VALUE
    local got; got=$(cfg "$2")
    if [ "$got" = "$3" ]; then pass "$1"; else fail "$1" "$2 is $got, expected $3"; fi
}
expect_cfg entrypoint Entrypoint '["/mrs"]'
expect_cfg cmd Cmd '["serve"]'
expect_cfg user User '"65534:65534"'
expect_cfg healthcheck Healthcheck.Test '["CMD" "/mrs" "healthcheck"]'
expect_cfg exposed_ports ExposedPorts 'map["465/tcp":{} "587/tcp":{} "8080/tcp":{}]'
expect_cfg volume Volumes 'map["/var/spool/mrs":{}]'
# The image's environment, one NAME=value per line.  Every MRS_* default it
# sets must be one the binary accepts: checked below by running the binary
# with exactly this environment.
image_env=()
while IFS= read -r kv; do [ -n "$kv" ] && image_env+=("$kv"); done < <(
    "${B[@]}" inspect --type image --format '{{range .Docker.Config.Env}}{{println .}}{{end}}' "$TAG")
case " ${image_env[*]} " in
*" MRS_SPOOL_DIR=/var/spool/mrs "*) pass env ;;
*) fail env "Env is '${image_env[*]}', expected MRS_SPOOL_DIR=/var/spool/mrs" ;;
esac

# --- 6. the image's files -----------------------------------------------------

ctr=$("${B[@]}" from --quiet --pull-never "$TAG") && mnt=$("${B[@]}" mount "$ctr") || {
    fail mount "cannot mount the image"; finish; }

files=$(cd "$mnt" && find . -mindepth 1 -printf '%p %y %m %U:%G\n' | sort)
want_files="./etc d 755 0:0
./etc/ssl d 755 0:0
./etc/ssl/certs d 755 0:0
./etc/ssl/certs/ca-certificates.crt f 644 0:0
./mrs f 755 0:0
./var d 755 0:0
./var/spool d 755 0:0
./var/spool/mrs d 700 65534:65534"
if [ "$files" = "$want_files" ]; then pass files
else fail files "image holds (path type mode owner):
$files
expected:
$want_files"; fi

ncerts=$(grep -c 'BEGIN CERTIFICATE' "$mnt/etc/ssl/certs/ca-certificates.crt" 2>/dev/null || echo 0)
check ca_bundle "CA bundle has $ncerts certificates" test "$ncerts" -ge 100

size_b=$(du -sb "$mnt" | cut -f1)
bin_b=$(stat -c %s "$mnt/mrs" 2>/dev/null || echo 0)
note "image files: $size_b bytes (mrs $bin_b bytes); $(cd "$mnt" && find . -type f | sort | tr '\n' ' ')"

# run_in_image ARGS... — run a command in the image's root as 65534:65534
# with exactly the image's environment (plus the extra_env assignments).
run_in_image() {
    env -i "${image_env[@]}" "${extra_env[@]}" /usr/sbin/chroot --userspec=65534:65534 "$mnt" "$@"
}
extra_env=()

# the version and the commit this tree is at (not `unknown`)
out=$(run_in_image /mrs version 2>&1); rc=$?
want="mrs $(cat VERSION) ($GIT_REV)"
if [ $rc -eq 0 ] && [ "$out" = "$want" ]; then pass version
else fail version "exit $rc, output '$out', expected '$want'"; fi

# `mrs token` loads and validates the whole configuration: the image's ENV
# must not make the binary exit 2.
out=$(run_in_image /mrs token steve.mailer@mycorp.se 2>&1); rc=$?
if [ $rc -eq 0 ] && [ "$out" = "elastx-mrs=55cdcb230c1a618bc6e054bd3da9f34c4b849d048e1fa94403062e072081a1d9" ]
then pass config_accepted; else fail config_accepted "exit $rc: $out"; fi

# The spool must be writable by the image's user (65534), as a volume
# initialised from the image would be.  The store's own folders are private
# (0700), so the directory is opened here as root and reached by 65534
# through /proc/self/fd, which checks only the spool directory's own
# permissions.
probe="$mnt/var/spool/mrs/.docker-test"
if exec 8< "$mnt/var/spool/mrs" &&
   setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'echo x > /proc/self/fd/8/.docker-test' 2>/dev/null &&
   [ "$(stat -c %u "$probe")" = 65534 ]; then
    pass spool_writable
else fail spool_writable "65534 cannot create a file in /var/spool/mrs"; fi
exec 8<&-
rm -f "$probe"

# free_port — a loopback TCP port nothing listens on.
free_port() {
    local p
    for _ in $(seq 50); do
        p=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
    done
    return 1
}

# `mrs serve` as the image runs it (65534, image env, image spool), on
# loopback ports, then the image's own HEALTHCHECK command.  Skipped (not
# counted) while serve is not in this build yet.
serve_check() {
    local hp log="$WORK/serve.log" i
    hp=$(free_port) || { fail serve_healthcheck "no free port"; return; }
    # What a container runtime adds to the image's root: device nodes,
    # resolv.conf and hosts (in the working container only; the file list
    # was checked above).
    mkdir -p "$mnt/dev" && local d
    for d in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9"; do
        # shellcheck disable=SC2086
        set -- $d; mknod -m 666 "$mnt/dev/$1" c "$2" "$3"
    done
    printf 'nameserver 127.0.0.1\n' > "$mnt/etc/resolv.conf"
    printf '127.0.0.1 localhost\n::1 localhost\n' > "$mnt/etc/hosts"
    extra_env=(MRS_HOSTNAME=mrs.test
               "MRS_SUBMISSION_LISTEN=127.0.0.1:$(free_port)" "MRS_SUBMISSIONS_LISTEN=127.0.0.1:$(free_port)"
               "MRS_HEALTH_LISTEN=127.0.0.1:$hp")
    # exec all the way down (subshell → env → chroot → mrs), so that $! is
    # mrs itself and SIGTERM reaches it.
    (exec env -i "${image_env[@]}" "${extra_env[@]}" /usr/sbin/chroot --userspec=65534:65534 "$mnt" \
        /mrs serve) > "$log" 2>&1 &
    serve_pid=$!
    for ((i = 0; i < SERVE_WAIT_S * 10; i++)); do
        kill -0 "$serve_pid" 2>/dev/null || break
        run_in_image /mrs healthcheck >/dev/null 2>&1 && break
        sleep 0.1
    done
    if ! kill -0 "$serve_pid" 2>/dev/null; then
        wait "$serve_pid"; local rc=$?; serve_pid=""
        if grep -q 'not available in this build yet' "$log"; then
            echo "SKIP docker/serve_healthcheck: mrs serve is not in this build yet"
        else
            fail serve_healthcheck "mrs serve exited $rc in the image: $(tail -n 3 "$log" | tr '\n' ' ')"
        fi
        extra_env=(); return
    fi
    if run_in_image /mrs healthcheck >/dev/null 2>&1; then pass serve_healthcheck
    else fail serve_healthcheck "HEALTHCHECK command failed against a running mrs serve"; fi
    kill -TERM "$serve_pid"
    for ((i = 0; i < 400; i++)); do kill -0 "$serve_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$serve_pid" 2>/dev/null; then
        fail serve_sigterm "mrs serve still running 40 s after SIGTERM"
    else
        wait "$serve_pid"; local rc=$?
        check serve_sigterm "mrs serve exited $rc after SIGTERM" test $rc -eq 0
    fi
    serve_pid=""
    extra_env=()
}
serve_check

# The podman run's account: a password hashed by the image's own binary.
podman_pw="docker-test-$RANDOM$RANDOM$RANDOM"
podman_hash=$(printf '%s\n' "$podman_pw" | run_in_image /mrs passwd 2>/dev/null) || podman_hash=""

"${B[@]}" umount "$ctr" >/dev/null
note "image size: $("${B[@]}" images --format '{{.Size}}' "$TAG" 2>/dev/null)"

# --- 7. a real container run: podman with runc ----------------------------------

# podman_conf — a containers.conf, registries.conf and storage.conf of this
# run's own, so that podman reads nothing of the machine's and leaves
# nothing outside $WORK but runc's /run/runc (see P below; removed by
# cleanup when this run made it): runc (crun fails on these machines'
# hybrid cgroup hierarchy), no default ulimits (the machines do not let the
# runtime call setrlimit), cgroupfs, file locks and events under $WORK
# instead of /dev/shm and the journal, a private CNI directory (only
# --network=host is used), no registry to search (--pull=never is passed as
# well).
podman_conf() {
    local d="$WORK/podman"
    mkdir -p "$d/tmp" "$d/cni" || return 1
    cat > "$d/containers.conf" <<CONF || return 1
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
lock_type = "file"
events_logger = "file"
events_logfile_path = "$d/events.log"
tmp_dir = "$d/tmp"

[network]
network_config_dir = "$d/cni"
CONF
    printf 'unqualified-search-registries = []\nshort-name-mode = "enforcing"\n' > "$d/registries.conf" || return 1
    printf '[storage]\ndriver = "%s"\ngraphroot = "%s"\nrunroot = "%s"\n' \
        "$driver" "$WORK/root" "$WORK/run" > "$d/storage.conf" || return 1
    export CONTAINERS_CONF="$d/containers.conf" CONTAINERS_REGISTRIES_CONF="$d/registries.conf" \
           CONTAINERS_STORAGE_CONF="$d/storage.conf"
    # the store buildah built the image into.  runc keeps its state in
    # /run/runc: podman 4.3 would pass it another root (--runtime-flag), but
    # not to the cleanup it has conmon run when a container exits.
    P=(podman --runtime runc --root "$WORK/root" --runroot "$WORK/run" --storage-driver "$driver")
}

podman_run() {
    local rc why
    # unbound and aiosmtpd: the DNS server and the sink of podman_run.py
    if ! install_tools podman runc unbound python3-aiosmtpd; then
        fail podman_tools "apt-get install podman runc unbound python3-aiosmtpd failed"; return
    fi
    podman_conf || { fail podman_tools "cannot write the podman configuration under $WORK"; return; }
    if ! why=$("${P[@]}" image exists "$TAG" 2>&1); then
        fail podman_image "podman does not see $TAG in the buildah store: $why"; return
    fi
    [ -n "$podman_hash" ] || { fail podman_users "mrs passwd in the image failed"; return; }
    note "podman $(podman --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1 {print $3}')"
    timeout -k 10 $PODMAN_TIMEOUT_S /usr/bin/python3 test/docker/podman_run.py --image "$TAG" \
        --name "$PODMAN_NAME" --user-hash "$podman_hash" --password "$podman_pw" \
        --version "$(cat VERSION)" --revision "$GIT_REV" -- "${P[@]}" | tee "$WORK/podman.out" |
        grep --line-buffered -v '^podman: '
    rc=${PIPESTATUS[0]}
    passed=$((passed + $(grep -c '^PASS ' "$WORK/podman.out")))
    failed=$((failed + $(grep -c '^FAIL ' "$WORK/podman.out")))
    # a helper that died (or was timed out) without its summary line fails
    if ! grep -q '^podman: ' "$WORK/podman.out"; then
        fail podman_helper "podman_run.py exited $rc without a summary"
    elif [ "$rc" -ne 0 ] && ! grep -q '^FAIL ' "$WORK/podman.out"; then
        fail podman_helper "podman_run.py exited $rc"
    fi
}
t=$SECONDS
podman_run
timed podman "$t"
finish
