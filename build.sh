#!/usr/bin/env bash
# build.sh — the one entry point for building, running and testing mrs.
#
#   ./build.sh            release build: build/mrs, static (static-pie) musl binary
#   ./build.sh run        build, then `mrs serve` in the foreground on laptop defaults
#   ./build.sh test       build, then every test; ends with "N passed, N failed"
#   ./build.sh asan       the same tests against an ASan+UBSan (clang, glibc) build
#   ./build.sh fuzz [S]   run every libFuzzer target for S seconds (default 60)
#   ./build.sh docker-test  build the Dockerfile with buildah and check the image
#   ./build.sh bench      side-by-side benchmark against Postfix
#   ./build.sh clean      remove build/ (keeps the fetched, verified dependencies)
#   ./build.sh distclean  remove build/ and .deps/
#
# On a fresh Debian/Ubuntu machine, as root, it installs what it lacks with
# apt-get.  Third-party sources (vendor/pins) are fetched as Debian source
# packages, checked against their pinned SHA-256 and built once per pin.
set -euo pipefail

TOP=$(cd "$(dirname "$0")" && pwd)
cd "$TOP"
DEPS="$TOP/.deps"
# MRS_BUILD_DIR lets several work trees' builds share one checkout (default build).
OUT=${MRS_BUILD_DIR:-build}
JOBS=$(nproc 2>/dev/null || echo 2)

say() { printf 'build.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# --- packages ------------------------------------------------------------

apt_updated=0
# need_pkgs PKG... — install the Debian packages that are not installed yet.
need_pkgs() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" = 0 ] || die "missing packages (${missing[*]}); run as root or install them"
    say "installing: ${missing[*]}"
    # Package scripts must not start daemons (postfix, dnsmasq…) that would
    # hold ports the tests need.
    local rcd=/usr/sbin/policy-rc.d made_rcd=0
    if [ ! -e $rcd ]; then printf '#!/bin/sh\nexit 101\n' > $rcd; chmod +x $rcd; made_rcd=1; fi
    if [ $apt_updated = 0 ]; then apt-get update -qq >&2 || true; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    [ $made_rcd = 1 ] && rm -f $rcd
    return 0
}

build_pkgs() { need_pkgs musl-tools musl-dev gcc make binutils autoconf automake libtool file ca-certificates bzip2 xz-utils dpkg-dev patch; }

# --- third-party sources ---------------------------------------------------

# apt_mirror — the Debian archive URI the machine's own apt sources use.
# Reads both the one-line format and deb822 .sources files; never hard-coded.
apt_mirror() {
    local f uri
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        uri=$(awk '$1=="deb" || $1=="deb-src" { for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$f" |
              grep -v -- '-security' | head -n1)
        [ -n "$uri" ] && { echo "${uri%/}"; return 0; }
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        uri=$(awk 'tolower($1)=="uris:" { for (i=2;i<=NF;i++) print $i }' "$f" | grep -v -- '-security' | head -n1)
        [ -n "$uri" ] && { echo "${uri%/}"; return 0; }
    done
    return 1
}

# fetch_source PKG TARBALL — download the Debian source package PKG from the
# trixie suite through a private apt source list (apt verifies the signed
# .dsc), leaving TARBALL in $DEPS/dl.
fetch_source() {
    local pkg=$1 tarball=$2 mirror apt_dir
    [ -f "$DEPS/dl/$tarball" ] && return 0
    mirror=$(apt_mirror) || die "no Debian mirror found in /etc/apt/sources.list*"
    apt_dir="$DEPS/apt"
    mkdir -p "$apt_dir/lists/partial" "$DEPS/dl"
    echo "deb-src $mirror trixie main" > "$apt_dir/sources.list"
    local opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
                -o "Dir::State::Lists=$apt_dir/lists" -o "APT::Sandbox::User=root")
    if [ ! -f "$apt_dir/updated" ]; then
        say "reading Debian trixie source index from $mirror"
        apt-get "${opts[@]}" update -qq >&2 ||
            die "cannot read Debian trixie sources from $mirror (the pins are Debian source packages: on a machine whose apt mirror is not a Debian archive, build with the Dockerfile, whose builder is debian:trixie-slim)"
        touch "$apt_dir/updated"
    fi
    say "fetching source package $pkg"
    (cd "$DEPS/dl" && apt-get "${opts[@]}" source --download-only -qq "$pkg" >&2) ||
        die "apt-get source $pkg failed"
    [ -f "$DEPS/dl/$tarball" ] ||
        die "source package $pkg no longer ships $tarball: review its line in vendor/pins"
}

# verify PIN_NAME FILE SHA256 — stop unless FILE has the pinned hash.
verify() {
    local got
    got=$(sha256sum "$2" | cut -d' ' -f1)
    [ "$got" = "$3" ] || die "$2: SHA-256 $got does not match the pin for '$1' in vendor/pins ($3); review that pin"
}

# The headers vendor/mbedtls-*.patch include: they are copied into mbedTLS's
# library directory before it is built.
MBEDTLS_HOOK_HEADERS="src/psa_sodium.h src/rsa_mont.h"

# build_dep NAME TARBALL SHA256 FLAVOUR CC — unpack and build one pinned
# library into $DEPS/$FLAVOUR, unless the same pin is already built there.
build_dep() {
    local name=$1 tarball=$2 sha=$3 flavour=$4 cc=$5
    local prefix="$DEPS/$flavour" stamp="$DEPS/$flavour/.$name.stamp"
    # mbedTLS is rebuilt when its configuration, one of our patches to it
    # (vendor/mbedtls-*.patch) or a header they include changes (a CI machine
    # with an old .deps gets the new build).
    local want="$sha $(cat vendor/mbedtls_config.h vendor/mbedtls-*.patch $MBEDTLS_HOOK_HEADERS |
                       sha256sum | cut -d' ' -f1) $cc"
    [ "$name" = mbedtls ] || want="$sha $cc"
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
    verify "$name" "$DEPS/dl/$tarball" "$sha"
    local work="$DEPS/src/$flavour"
    rm -rf "${work:?}/$name"; mkdir -p "$work/$name" "$prefix/lib" "$prefix/include"
    tar -xf "$DEPS/dl/$tarball" -C "$work/$name" --strip-components=1
    say "building $name ($flavour)"
    case $name in
    mbedtls)
        # Our narrow hooks into mbedTLS; the header that says why and how:
        # src/psa_sodium.h (the X25519 driver on libsodium, and AES-256-GCM:
        # its patch, mbedtls-gcm-aes256.patch, declares the hook in gcm.h),
        # src/rsa_mont.h (the RSA private operation), src/p256.h (the
        # secp256r1 ECDSA signer hook in ecdsa.c; its patch declares the hook
        # itself), src/sha256_ni.h (SHA-256 blocks on the x86 SHA instructions;
        # its patch declares the hook in sha256.h).
        local p
        for p in vendor/mbedtls-*.patch; do
            patch -s -p1 -d "$work/$name" < "$p" || die "$p does not apply to $tarball"
        done
        cp $MBEDTLS_HOOK_HEADERS "$work/$name/library/"
        make -s -C "$work/$name/library" -j"$JOBS" CC="$cc" AR=ar \
            CFLAGS="-O2 -fPIC -DMBEDTLS_CONFIG_FILE='\"$TOP/vendor/mbedtls_config.h\"'" \
            libmbedcrypto.a libmbedx509.a libmbedtls.a >&2
        cp "$work/$name"/library/libmbed{crypto,x509,tls}.a "$prefix/lib/"
        rm -rf "$prefix/include/mbedtls" "$prefix/include/psa" "$prefix/include/everest"
        cp -r "$work/$name/include/mbedtls" "$work/$name/include/psa" "$prefix/include/"
        ;;
    libsodium)
        (cd "$work/$name" && ./autogen.sh -s >/dev/null 2>&1 &&
         ./configure -q --prefix="$prefix" --disable-shared --enable-static --enable-minimal \
             --disable-pie --with-pic CC="$cc" CFLAGS="-O2" >&2 &&
         make -s -j"$JOBS" >/dev/null 2>&1 && make -s install >/dev/null) ||
            die "libsodium build failed (in $work/$name)"
        ;;
    *) die "vendor/pins: no recipe for '$name'" ;;
    esac
    echo "$want" > "$stamp"
}

# deps FLAVOUR CC — fetch, verify and build every pinned library.
deps() {
    local flavour=$1 cc=$2 name pkg ver tarball sha
    while read -r name pkg ver tarball sha; do
        case $name in ''|'#'*) continue ;; esac
        fetch_source "$pkg" "$tarball"
        build_dep "$name" "$tarball" "$sha" "$flavour" "$cc"
    done < vendor/pins
}

# musl_specs — gcc specs for musl that can link static-pie (Debian's
# musl-gcc.specs always asks for the dynamic loader, which a static binary
# must not have, and uses Scrt1.o where static-pie needs rcrt1.o).
musl_specs() {
    local sys out="$DEPS/musl-static-pie.specs"
    sys=$(sed -n 's/.*-specs "\{0,1\}\([^" ]*\)"\{0,1\}.*/\1/p' "$(command -v musl-gcc)")
    [ -f "$sys" ] || die "musl-gcc.specs not found"
    sed -e 's|Scrt1\.o|rcrt1.o|' \
        -e 's|-dynamic-linker \([^ ]*\)|%{!static-pie:-dynamic-linker \1} %{static-pie:-static -pie --no-dynamic-linker -z text}|' \
        "$sys" > "$out.tmp"
    cmp -s "$out.tmp" "$out" 2>/dev/null && rm "$out.tmp" || mv "$out.tmp" "$out"
    echo "$out"
}

# --- our build -------------------------------------------------------------

# MRS_GIT_REV — the revision the binary reports where there is no .git to
# ask (the image build passes it in; the Makefile asks git otherwise).
release() {
    build_pkgs
    mkdir -p "$DEPS"
    deps musl musl-gcc
    local specs rev=(); specs=$(musl_specs)
    if [ -n "${MRS_GIT_REV:-}" ]; then
        [[ $MRS_GIT_REV =~ ^[A-Za-z0-9._+-]{1,64}$ ]] ||
            die "MRS_GIT_REV must be 1 to 64 letters, digits, '.', '_', '+' or '-'"
        rev=(GIT_REV="$MRS_GIT_REV")
    fi
    make -s -j"$JOBS" BUILD="$OUT" CC="gcc -specs=$specs" DEPS="$DEPS/musl" \
        LDFLAGS_EXTRA="-static-pie" "${rev[@]}" all
}

asan_build() {
    build_pkgs
    need_clang
    mkdir -p "$DEPS"
    deps host cc
    make -s -j"$JOBS" BUILD="$OUT/asan" CC=clang DEPS="$DEPS/host" SANITIZE=1 all
}

# valgrind_build — a plain glibc build of the same sources for memcheck
# (valgrind cannot follow malloc inside a static musl binary), and the
# constant-time check of src/p256.c (test/tools/p256_ct.c, which needs
# valgrind's header).
valgrind_build() {
    need_pkgs valgrind
    deps host cc
    make -s -j"$JOBS" BUILD="$OUT/valgrind" CC=cc DEPS="$DEPS/host" "$OUT/valgrind/mrs.debug" \
        "$OUT/valgrind/tools/p256_ct"
}

# need_cap PACKAGE PROBE... — a test needs what PROBE checks (a module,
# a protocol, a tool's feature), not just a package name: install PACKAGE
# when PROBE fails, then insist.  (swaks installs without Net::SSLeay,
# which is only a Recommends, and then cannot do --tls.)
need_cap() {
    local pkg=$1; shift
    "$@" >/dev/null 2>&1 && return 0
    need_pkgs "$pkg"
    "$@" >/dev/null 2>&1 ||
        die "the tests need '$*' to work; it still fails with $pkg installed"
}

fuzzer_probe() {
    local d; d=$(mktemp -d)
    printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' > "$d/p.c"
    clang -fsanitize=fuzzer,address,undefined -o "$d/p" "$d/p.c"; local rc=$?
    rm -rf "$d"; return $rc
}

# need_clang — clang with its sanitizer and libFuzzer runtimes.  Debian
# ships them in libclang-rt-<major>-dev of the default clang (14 on Debian
# 12, 19 on Debian 13): the package is named after the installed clang,
# never hard-coded, then a real -fsanitize=fuzzer,address,undefined link
# must work.
need_clang() {
    need_pkgs clang
    local v
    v=$(clang -dumpversion 2>/dev/null) || die "clang is installed but does not run"
    need_cap "libclang-rt-${v%%.*}-dev" fuzzer_probe
}

test_pkgs() {
    need_pkgs dnsmasq-base unbound python3 swaks curl openssl procps iproute2 python3-aiosmtpd python3-yaml \
        valgrind libnet-ssleay-perl util-linux prometheus \
        python3-dkim python3-nacl python3-dnspython opendkim-tools ldnsutils libssl-dev
    need_cap unbound sh -c 'command -v unbound-checkconf && unbound -V'
    need_cap dnsmasq-base dnsmasq --version
    need_cap python3-aiosmtpd /usr/bin/python3 -c 'import aiosmtpd.controller'
    need_cap python3-yaml /usr/bin/python3 -c 'import yaml'
    need_cap libnet-ssleay-perl perl -MNet::SSLeay -e 'Net::SSLeay::library_init()'
    need_cap swaks sh -c 'swaks --support 2>&1 | grep -q "^=== TLS supported"'
    need_cap curl sh -c 'curl --version | grep -qw smtps'
    need_cap openssl openssl s_client -help
    need_cap util-linux prlimit --version
    # DKIM verifiers (test_dkim): dkimpy with Ed25519 through PyNaCl and its
    # DNS through dnspython; OpenDKIM's opendkim-testmsg, run in a private
    # mount namespace (unshare) with the test's resolv.conf
    need_cap python3-dkim /usr/bin/python3 -c 'import dkim, dkim.crypto'
    need_cap python3-nacl /usr/bin/python3 -c 'import nacl.signing'
    need_cap python3-dnspython /usr/bin/python3 -c 'import dns.resolver'
    need_cap opendkim-tools sh -c 'command -v opendkim-testmsg'
    need_cap util-linux unshare --version
    need_cap valgrind valgrind --version
    # DANE (test_dane): a DNSSEC-signed zone made with ldns-keygen /
    # ldns-signzone, served and validated by unbound (auth-zone, trust anchor)
    need_cap ldnsutils sh -c 'command -v ldns-keygen && command -v ldns-signzone'
    # the OpenSSL load generator (test_loadgen, the benchmark): TLS 1.3 with
    # session tickets, compiled and linked against the system's libssl
    need_cap libssl-dev sh -c 'printf "#include <openssl/ssl.h>\nint main(void){return SSL_CTX_set_num_tickets(SSL_CTX_new(TLS_client_method()), 1) != 1;}\n" |
        ${HOSTCC:-gcc} -x c - -o /dev/null -lssl -lcrypto'
    # promtool (check rules / test rules / check metrics); the package's
    # daemon is never started (need_pkgs installs under policy-rc.d 101).
    need_cap prometheus promtool --version
    need_clang
}

run_tests() {
    local build=$1; shift
    test_pkgs
    # the benchmark's OpenSSL load generator (test_loadgen runs it too)
    "$TOP/test/bench/build-loadgen-ossl.sh" "$build"
    "$TOP/test/run-all.sh" "$build" "$@"
}

# --- ./build.sh run: the relay on laptop defaults, and a first message -------

RUN_DIR=${RUN_DIR:-$TOP/var}
DEMO_DOMAIN=demo.test

# free_port_at PORT — PORT when nothing listens there (TCP and UDP), else
# another free one.
free_port_at() {
    /usr/bin/python3 - "$1" <<'PY'
import socket, sys
want = int(sys.argv[1])
for port in [want] + [0] * 20:
    t, u = socket.socket(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        t.bind(("127.0.0.1", port)); p = t.getsockname()[1]; u.bind(("127.0.0.1", p))
        print(p); break
    except OSError:
        pass
    finally:
        t.close(); u.close()
PY
}

# demo_start — unless the operator configured users, DNS or a smarthost:
# a loopback DNS server whose zone authorizes the demo account for
# demo.test, and a receiving SMTP server as smarthost whose messages land
# in $RUN_DIR/demo/mail (test/tools/demo.py).  DEMO=off skips it.
demo_pid=
demo_start() {
    local user=$1 token dns_port sink_port
    need_pkgs unbound python3 python3-aiosmtpd swaks
    token=$("$OUT/mrs" token "$user")
    dns_port=$(free_port_at "${DEMO_DNS_PORT:-5300}")
    sink_port=$(free_port_at "${DEMO_SINK_PORT:-2525}")
    mkdir -p "$RUN_DIR/demo"
    /usr/bin/python3 "$TOP/test/tools/demo.py" --dir "$RUN_DIR/demo" --dns-port "$dns_port" \
        --sink-port "$sink_port" --domain "$DEMO_DOMAIN" \
        --record "v=spf1 include:${MRS_SPF_INCLUDE:-elastx.email} -all" --record "$token" &
    demo_pid=$!
    local i
    for i in $(seq 1 150); do
        [ -e "$RUN_DIR/demo/ready" ] && break
        kill -0 "$demo_pid" 2>/dev/null || die "the demo DNS/SMTP servers did not start (see $RUN_DIR/demo/unbound.log)"
        sleep 0.1
    done
    [ -e "$RUN_DIR/demo/ready" ] || die "the demo DNS/SMTP servers did not start in 15 s"
    export MRS_DNS_SERVERS=127.0.0.1:$dns_port MRS_SMARTHOST=127.0.0.1:$sink_port MRS_SMARTHOST_TLS=none
    say "demo: DNS on 127.0.0.1:$dns_port authorizes $user for $DEMO_DOMAIN; delivery goes to a local SMTP server on 127.0.0.1:$sink_port (messages in $RUN_DIR/demo/mail)"
}

run_relay() {
    mkdir -p "$RUN_DIR/spool"
    export MRS_SPOOL_DIR=${MRS_SPOOL_DIR:-$RUN_DIR/spool}
    export MRS_SUBMISSION_LISTEN=${MRS_SUBMISSION_LISTEN:-:2587}
    export MRS_SUBMISSIONS_LISTEN=${MRS_SUBMISSIONS_LISTEN:-:2465}
    export MRS_HEALTH_LISTEN=${MRS_HEALTH_LISTEN:-:8080}
    export MRS_HOSTNAME=${MRS_HOSTNAME:-localhost}
    local demo=0 pw=""
    if [ -z "${MRS_USERS:-}" ] && [ -z "${MRS_USERS_FILE:-}" ]; then
        # a demo account, made once and kept under the git-ignored var/
        if [ ! -s "$RUN_DIR/users" ]; then
            pw=$(head -c 12 /dev/urandom | base64 | tr -d '/+=')
            echo "$pw" > "$RUN_DIR/demo-password"
            echo "demo@localhost:$(printf '%s\n' "$pw" | "$OUT/mrs" passwd)" > "$RUN_DIR/users"
        fi
        pw=$(cat "$RUN_DIR/demo-password")
        export MRS_USERS_FILE=$RUN_DIR/users
        say "demo account: demo@localhost, password $pw ($RUN_DIR/users; set MRS_USERS or MRS_USERS_FILE for your own)"
        [ "${DEMO:-on}" != off ] && [ -z "${MRS_DNS_SERVERS:-}" ] && [ -z "${MRS_SMARTHOST:-}" ] && demo=1
    fi
    if [ $demo = 1 ]; then
        demo_start demo@localhost
    else
        say "send as a domain whose DNS has: TXT \"v=spf1 include:elastx.email -all\" and TXT \"$("$OUT/mrs" token demo@localhost)\""
    fi
    say "starting mrs: submission :${MRS_SUBMISSION_LISTEN##*:}, submissions :${MRS_SUBMISSIONS_LISTEN##*:}, health :${MRS_HEALTH_LISTEN##*:}, spool $MRS_SPOOL_DIR"
    "$OUT/mrs" serve &
    local mrs_pid=$!
    # Ctrl-C / SIGTERM: drain the relay, then stop the demo servers
    trap 'kill -TERM $mrs_pid 2>/dev/null' INT TERM
    if [ $demo = 1 ]; then
        local i ready=0 port=${MRS_SUBMISSION_LISTEN##*:} hp=${MRS_HEALTH_LISTEN##*:}
        for i in $(seq 1 600); do
            kill -0 "$mrs_pid" 2>/dev/null || break
            # healthy, and its submission port answers (a health port alone
            # could be another process's that happened to take it)
            if "$OUT/mrs" healthcheck "127.0.0.1:$hp" 2>/dev/null &&
                (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then ready=1; break; fi
            sleep 0.1
        done
        if [ $ready = 0 ]; then
            kill -TERM "$mrs_pid" "$demo_pid" 2>/dev/null
            wait 2>/dev/null
            die "mrs did not become ready (see its lines above)"
        fi
        say "ready. Send a message through the relay (STARTTLS + AUTH on port $port), e.g.:"
        printf '\n  swaks --server 127.0.0.1:%s --tls --auth PLAIN --auth-user demo@localhost --auth-password %s --from newsletter@%s --to friend@example.net --header "Subject: hello from mrs"\n\n' \
            "$port" "$pw" "$DEMO_DOMAIN" >&2
        say "then see it delivered: ls $RUN_DIR/demo/mail/ (each message a .eml file). Ctrl-C stops everything."
    fi
    # a trapped signal interrupts wait (status 128+n) while mrs drains:
    # wait until mrs itself has exited and take its status
    local rc=0
    while :; do
        rc=0
        wait "$mrs_pid" || rc=$?
        kill -0 "$mrs_pid" 2>/dev/null || break
    done
    if [ -n "$demo_pid" ]; then
        kill -TERM "$demo_pid" 2>/dev/null
        wait "$demo_pid" 2>/dev/null
    fi
    return $rc
}

mode=${1:-release}
case $mode in
release|build) release ;;
run)
    release
    run_relay
    ;;
test) release; valgrind_build; shift; run_tests "$OUT" "$@" ;;
asan) asan_build; valgrind_build; shift; run_tests "$OUT/asan" "$@" ;;
fuzz) shift; need_clang; deps host cc; exec test/fuzz/run.sh "${1:-60}" ;;
docker-test) exec test/docker/test.sh ;;
bench) release; exec test/bench/run.sh ;;
clean) rm -rf build ;;
distclean) rm -rf build .deps ;;
*) die "unknown mode '$mode' (release, run, test, asan, fuzz, docker-test, bench, clean, distclean)" ;;
esac
