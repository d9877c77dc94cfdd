#!/usr/bin/env bash
# test/fresh-root.sh [REPO [REF]] — prove that `./build.sh test` and
# `./build.sh asan` pass on a machine that has only what build.sh installs.
# Run as root, by hand (not part of CI: it takes 20-40 minutes and downloads
# every package the tests need).
#
# Why: CI runs on a long-lived machine where packages once installed by
# hand stay installed, so a missing install step stays green (it happened:
# swaks without Net::SSLeay).  Here every run starts from a bare root.
#
#   1. debootstrap --variant=minbase of THIS machine's Debian release
#      (VERSION_CODENAME in /etc/os-release), from the mirror of this
#      machine's own apt sources (never a hard-coded host), plus git and
#      ca-certificates; its apt sources list <release>, -updates and
#      -security like a stock machine, it is upgraded once, its package
#      lists are dropped.  Cached in /var/tmp/mrs-fresh-root/<release>-...
#      and re-used; `rm -rf /var/tmp/mrs-fresh-root` refreshes it.
#   2. each run mounts a fresh overlay on the cached root (a copy when
#      overlayfs is unavailable), so nothing a previous run installed
#      survives; binds /proc, /sys, /dev, /dev/pts, /dev/shm; copies this
#      machine's /etc/resolv.conf (apt needs DNS); installs a policy-rc.d
#      that forbids package scripts to start daemons (unbound, dnsmasq...);
#      `git clone`s REPO (default: the repository holding this script) at
#      REF (default: its HEAD, committed state only) into /src;
#   3. chroot, clean environment:  cd /src && DOCKER_TEST=off ./build.sh test
#      then                        cd /src && DOCKER_TEST=off ./build.sh asan
#      The buildah image test (test/docker/test.sh) is left out: it runs its
#      own debootstrap, buildah store and overlay/chroot isolation, which do
#      not nest inside this chroot.  Run `./build.sh docker-test` on the host.
#   4. prints both closing "N passed, N failed" lines and the time of each
#      phase; exits non-zero when either run fails or ends without its line,
#      or when processes the tests started are still alive in the root after
#      them (tests must end their own daemons: such leftovers are reported
#      by pid and command line, then ended by pid so the root can be
#      unmounted; they can only descend from this run's own chroot).
# Everything this script mounted is unmounted on exit (trap), and the run's
# overlay is removed (FRESH_ROOT_KEEP=1 keeps it, unmounted, for a look).
# Logs stay in /var/tmp/mrs-fresh-root/logs/<time>/.
#
# What the bare root assumes the new machine has, honestly: LESS than a real
# one.  A new machine of this project's kind already has gcc, make, cmake,
# clang-format, clang-tidy, cppcheck, gdb, valgrind, strace, perf, python3,
# perl and git, and any installed Debian has its "important" packages
# (netbase, procps, iproute2...), an /etc/hosts and a resolver.  This root
# has only minbase (Debian's Essential and apt), git and ca-certificates
# (what cloning needs; git pulls in perl), an /etc/hosts as the Debian
# installer writes it, and the host's resolv.conf.  Starting from less is
# the stricter test: everything else the tests use must come from build.sh.
# FRESH_ROOT_EXTRA="pkg ..." adds packages to the base (a separate cache).
# FRESH_ROOT_RELEASE=trixie tries another Debian release than this
# machine's, from the same mirror.
#
# Environment: FRESH_ROOT_CACHE (default /var/tmp/mrs-fresh-root),
# FRESH_ROOT_EXTRA, FRESH_ROOT_APT_CACHE=off (by default downloaded .debs are
# kept in the cache dir, bound to the root's /var/cache/apt/archives: apt
# still has to be asked to install each one, so this only saves downloads),
# FRESH_ROOT_KEEP=1, FRESH_ROOT_PHASE_TIMEOUT (seconds per build.sh run,
# default 5400), FRESH_ROOT_PHASES (default "test asan").
set -uo pipefail

SELF_DIR=$(cd "$(dirname "$0")" && pwd)
CACHE=${FRESH_ROOT_CACHE:-/var/tmp/mrs-fresh-root}
EXTRA=${FRESH_ROOT_EXTRA:-}
PHASE_TIMEOUT=${FRESH_ROOT_PHASE_TIMEOUT:-5400}
PHASES=${FRESH_ROOT_PHASES:-test asan}
DEBOOTSTRAP_TIMEOUT_S=2400
BASE_PKGS="git ca-certificates${EXTRA:+ $EXTRA}"

note() { printf 'fresh-root: %s\n' "$*" >&2; }
die() { note "error: $*"; exit 2; }

t_start=$SECONDS
timing=()
timed() { timing+=("$(printf '%-10s %5ds' "$1" $((SECONDS - $2)))"); }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, mount, chroot)"

# --- what to test -------------------------------------------------------------

REPO=${1:-$(git -C "$SELF_DIR" rev-parse --show-toplevel 2>/dev/null)} || true
[ -n "$REPO" ] && [ -d "$REPO" ] || die "no repository (give its path as the first argument)"
REF=${2:-HEAD}
REV=$(git -C "$REPO" rev-parse --verify "$REF^{commit}" 2>/dev/null) || die "$REPO has no commit '$REF'"
if [ "$REF" = HEAD ] && [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    note "warning: $REPO has uncommitted changes; only the commit $REV is tested"
fi

# --- this machine's release and mirror ---------------------------------------

# shellcheck source=/dev/null
CODENAME=${FRESH_ROOT_RELEASE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-}")}
[ -n "$CODENAME" ] || die "no VERSION_CODENAME in /etc/os-release"
ARCH=$(dpkg --print-architecture)

# apt_uris — every archive URI of this machine's apt sources, one-line and
# deb822 formats alike (as test/docker/test.sh and build.sh's apt_mirror()).
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
MIRROR=$(apt_uris | grep -v -- '-security' | head -n1); MIRROR=${MIRROR%/}
SECURITY=$(apt_uris | grep -- '-security' | head -n1); SECURITY=${SECURITY%/}
[ -n "$MIRROR" ] || die "no Debian archive in this machine's apt sources"

key=$(printf '%s\n' "$CODENAME" "$ARCH" "$MIRROR" "$SECURITY" "$BASE_PKGS" v1 | sha256sum | cut -c1-10)
BASE="$CACHE/$CODENAME-$ARCH-minbase-$key"
LOGS="$CACHE/logs/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$CACHE" "$LOGS" || die "cannot create $CACHE"

# --- cleanup: only what this run mounted and started ---------------------------

RUN=""
R=""
MOUNTED=()       # mount points this run made, in order
child=""         # pid of the running phase (timeout ... chroot ...)
leftovers=0
cleaned=0

# unmount_under DIR — unmount whatever is mounted below DIR, deepest first
# (only used on this run's own directories and a stale debootstrap target).
unmount_under() {
    local m
    awk -v d="$1/" 'index($2 "/", d) == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
}
mounted_under() { awk -v d="$1" '$2 == d || index($2, d "/") == 1' /proc/mounts | grep -q .; }

# procs_in_root — pids of processes whose root directory is this run's root.
procs_in_root() {
    local p r
    [ -n "$R" ] || return 0
    for p in /proc/[0-9]*; do
        r=$(readlink "$p/root" 2>/dev/null) || continue
        [ "$r" = "$R" ] && echo "${p#/proc/}"
    done
    return 0
}

# report_leftovers WHEN [GRACE] — report (and count, once each) processes
# still alive in the root, after GRACE half-seconds (default 10) for those
# already exiting.
declare -A reported
report_leftovers() {
    local pids p i
    for ((i = 0; i < ${2:-10}; i++)); do
        pids=$(procs_in_root)
        [ -z "$pids" ] && return 0
        sleep 0.5
    done
    for p in $pids; do
        [ -n "${reported[$p]:-}" ] && continue
        reported[$p]=1
        note "LEFTOVER after $1: pid $p: $(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null)"
        leftovers=$((leftovers + 1))
    done
}

end_leftovers() {
    local pids p i
    for i in 1 2 3; do
        pids=$(procs_in_root)
        [ -z "$pids" ] && return 0
        for p in $pids; do kill -TERM "$p" 2>/dev/null; done
        sleep 2
    done
    for p in $(procs_in_root); do kill -KILL "$p" 2>/dev/null; done
    sleep 1
}

cleanup() {
    [ $cleaned = 1 ] && return 0
    cleaned=1
    set +e
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        kill -TERM "$child" 2>/dev/null; sleep 2; kill -KILL "$child" 2>/dev/null
        wait "$child" 2>/dev/null
    fi
    report_leftovers cleanup 1
    end_leftovers
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTED[i]}" 2>/dev/null || {
            note "umount ${MOUNTED[i]} failed (busy?); detaching it lazily"
            umount -l "${MOUNTED[i]}" 2>/dev/null || note "could not unmount ${MOUNTED[i]}"
        }
    done
    MOUNTED=()
    if [ -n "$RUN" ] && [ -d "$RUN" ]; then
        if mounted_under "$RUN"; then
            note "something is still mounted under $RUN: not removing it"
        elif [ "${FRESH_ROOT_KEEP:-0}" = 1 ]; then
            rm -f "$RUN/pid"
            note "kept $RUN (FRESH_ROOT_KEEP=1): its changes are in $RUN/upper"
        else
            rm -rf --one-file-system "$RUN"
        fi
    fi
}
trap cleanup EXIT
trap 'note "interrupted"; cleanup; exit 130' INT TERM HUP

# mount_it ARGS... TARGET — mount, and remember TARGET for the cleanup.
mount_it() {
    local target=${*: -1}
    mount "$@" || return 1
    MOUNTED+=("$target")
    mount --make-private "$target" 2>/dev/null || true
}

# --- 0. host tools -------------------------------------------------------------

t=$SECONDS
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v git >/dev/null || missing+=(git)
if [ ${#missing[@]} -gt 0 ]; then
    note "installing on this machine: ${missing[*]}"
    made_rcd=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_rcd=1
    fi
    apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    rc=$?
    [ $made_rcd = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ $rc = 0 ] || die "apt-get install ${missing[*]} failed"
fi
timed host-tools "$t"

# --- 1. the bare root, cached --------------------------------------------------

# in_base CMD... — run a command inside the base being made (proc mounted
# for apt's and dpkg's sake, unmounted after).
in_base() {
    local root=$1; shift
    mount -t proc proc "$root/proc" || return 1
    chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root DEBIAN_FRONTEND=noninteractive "$@"
    local rc=$?
    umount "$root/proc"
    return $rc
}

make_base() {
    local tmp="$BASE.tmp" keyring
    [ -f "$BASE.done" ] && [ -x "$BASE/usr/bin/apt-get" ] && { note "re-using $BASE (made $(cat "$BASE.done"))"; return 0; }
    unmount_under "$tmp"
    rm -rf --one-file-system "$BASE" "$tmp" "$BASE.done"
    note "debootstrap --variant=minbase --include=${BASE_PKGS// /,} $CODENAME from $MIRROR (log: $LOGS/debootstrap.log)"
    if ! timeout -k 10 $DEBOOTSTRAP_TIMEOUT_S debootstrap --variant=minbase --include="${BASE_PKGS// /,}" \
            "$CODENAME" "$tmp" "$MIRROR" > "$LOGS/debootstrap.log" 2>&1; then
        tail -n 15 "$LOGS/debootstrap.log" >&2
        unmount_under "$tmp"
        return 1
    fi
    unmount_under "$tmp"
    # The apt sources of a stock machine: release, -updates, -security.
    keyring=/usr/share/keyrings/debian-archive-keyring.pgp
    [ -e "$tmp$keyring" ] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    rm -f "$tmp/etc/apt/sources.list"
    {
        printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: %s\n' \
            "$MIRROR" "$CODENAME" "$CODENAME" "$keyring"
        [ -z "$SECURITY" ] || printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: %s\n' \
            "$SECURITY" "$CODENAME" "$keyring"
    } > "$tmp/etc/apt/sources.list.d/debian.sources"
    # /etc/hosts as the Debian installer writes it (debootstrap writes none).
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n' \
        "$(hostname)" > "$tmp/etc/hosts"
    cp /etc/resolv.conf "$tmp/etc/resolv.conf"
    printf '#!/bin/sh\nexit 101\n' > "$tmp/usr/sbin/policy-rc.d"; chmod 755 "$tmp/usr/sbin/policy-rc.d"
    # Up to date, as a new machine is; then without package lists or
    # downloaded packages, so build.sh must run apt-get update itself.
    note "upgrading the base from $CODENAME-updates/-security (log: $LOGS/base-upgrade.log)"
    in_base "$tmp" sh -c 'apt-get update -qq && apt-get -y -qq -o Dpkg::Options::=--force-confold dist-upgrade' \
        > "$LOGS/base-upgrade.log" 2>&1 || { tail -n 15 "$LOGS/base-upgrade.log" >&2; return 1; }
    in_base "$tmp" apt-get clean
    rm -rf "$tmp"/var/lib/apt/lists/* "$tmp/etc/resolv.conf"
    rm -f "$tmp/usr/sbin/policy-rc.d"
    chroot "$tmp" dpkg-query -W -f='${Package} ${Version}\n' > "$BASE.packages" 2>/dev/null
    mv "$tmp" "$BASE" && date -u +%FT%TZ > "$BASE.done"
}

t=$SECONDS
exec 9> "$CACHE/lock"
flock -w $DEBOOTSTRAP_TIMEOUT_S 9 || die "another fresh-root run holds $CACHE/lock while making the base"
make_base || die "could not make the base root"
# Runs whose script died without its trap (SIGKILL, power): nothing of
# theirs runs any more, so their directories are stale.
for stale in "$CACHE"/run.*; do
    [ -d "$stale" ] || continue
    [ -f "$stale/pid" ] && kill -0 "$(cat "$stale/pid")" 2>/dev/null && continue
    [ -f "$stale/pid" ] || continue   # kept on purpose (FRESH_ROOT_KEEP)
    note "removing the stale run $stale"
    unmount_under "$stale"; mounted_under "$stale" || rm -rf --one-file-system "$stale"
done
RUN=$(mktemp -d "$CACHE/run.XXXXXX") || die "mktemp failed"
echo $$ > "$RUN/pid"
exec 9>&-
timed base "$t"
note "base: $BASE ($(wc -l < "$BASE.packages" 2>/dev/null) packages, list in $BASE.packages)"

# --- 2. this run's root ----------------------------------------------------------

t=$SECONDS
R="$RUN/root"
mkdir -p "$RUN/upper" "$RUN/work" "$R"
if mount_it -t overlay overlay -o "lowerdir=$BASE,upperdir=$RUN/upper,workdir=$RUN/work" "$R" 2>/dev/null; then
    note "root: overlay on the base at $R"
else
    note "root: overlayfs unavailable, copying the base to $R"
    cp -a --reflink=auto "$BASE/." "$R/" || die "cannot copy the base"
fi
mount_it --bind /proc "$R/proc" &&
mount_it --bind /sys "$R/sys" &&
mount_it --bind /dev "$R/dev" &&
mount_it --bind /dev/pts "$R/dev/pts" &&
mount_it --bind /dev/shm "$R/dev/shm" || die "bind mounts failed"
if [ -d "$R/run/shm" ] && [ ! -L "$R/run/shm" ]; then mount_it --bind /dev/shm "$R/run/shm" || die "bind /run/shm failed"; fi
cp -L /etc/resolv.conf "$R/etc/resolv.conf"
printf '#!/bin/sh\n# fresh-root.sh: package scripts must not start daemons in this chroot\nexit 101\n' > "$R/usr/sbin/policy-rc.d"
chmod 755 "$R/usr/sbin/policy-rc.d"
if [ "${FRESH_ROOT_APT_CACHE:-on}" != off ]; then
    mkdir -p "$CACHE/apt-archives/partial"
    mount_it --bind "$CACHE/apt-archives" "$R/var/cache/apt/archives" || die "bind apt-archives failed"
fi
timed root "$t"

t=$SECONDS
note "git clone $REPO into $R/src at $REV"
{ git clone -q --no-hardlinks "$REPO" "$R/src" &&
  { git -C "$R/src" cat-file -e "$REV^{commit}" 2>/dev/null || git -C "$R/src" fetch -q "$REPO" "$REV"; } &&
  git -C "$R/src" checkout -q --detach "$REV"; } > "$LOGS/clone.log" 2>&1 ||
    { cat "$LOGS/clone.log" >&2; die "git clone failed"; }
timed clone "$t"

# --- 3. the tests, inside ----------------------------------------------------------

# run_phase MODE — `./build.sh MODE` in the root, as root logs in on a new
# machine (a clean environment); output to the terminal and $LOGS/MODE.log.
declare -A closing rcs
run_phase() {
    local mode=$1 log="$LOGS/$1.log" rc tailpid
    note "chroot: cd /src && DOCKER_TEST=off ./build.sh $mode (log: $log)"
    : > "$log"
    timeout -k 30 "$PHASE_TIMEOUT" chroot "$R" /usr/bin/env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root USER=root LOGNAME=root \
        SHELL=/bin/bash TERM=dumb DOCKER_TEST=off \
        /bin/bash -c "cd /src && exec ./build.sh $mode" < /dev/null > "$log" 2>&1 &
    child=$!
    tail -n +1 --pid="$child" -f "$log" &
    tailpid=$!
    wait "$child"; rc=$?
    child=""
    wait "$tailpid" 2>/dev/null
    rcs[$mode]=$rc
    closing[$mode]=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n1)
    [ $rc = 124 ] && note "./build.sh $mode timed out after ${PHASE_TIMEOUT}s"
    report_leftovers "build.sh $mode"
}

for phase in $PHASES; do
    t=$SECONDS
    run_phase "$phase"
    timed "$phase" "$t"
done

# --- 4. verdict ---------------------------------------------------------------------

t=$SECONDS
cleanup
timed cleanup "$t"
timed total "$t_start"

ok=1
echo
echo "== fresh-root: $CODENAME minbase + $BASE_PKGS, $(git -C "$REPO" log -1 --format='%h %s' "$REV" | cut -c1-80)"
for phase in $PHASES; do
    line=${closing[$phase]:-}
    if [ -z "$line" ]; then
        echo "build.sh $phase: no closing line (exit ${rcs[$phase]}; see $LOGS/$phase.log)"; ok=0
    else
        echo "build.sh $phase: $line (exit ${rcs[$phase]})"
        [ "${rcs[$phase]}" = 0 ] && [[ "$line" == *" 0 failed" ]] || ok=0
        sed -n '/^== failed:/,/^[0-9]* passed, [0-9]* failed$/p' "$LOGS/$phase.log" | sed '1d;$d'
    fi
done
if [ $leftovers -gt 0 ]; then
    echo "leftover processes in the root after the tests: $leftovers (see above; ended by pid)"; ok=0
fi
echo "timing:"
printf '  %s\n' "${timing[@]}"
echo "logs: $LOGS"
[ $ok = 1 ] && { echo "fresh-root: PASS"; exit 0; }
echo "fresh-root: FAIL"
exit 1
