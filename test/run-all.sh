#!/usr/bin/env bash
# run-all.sh BUILD_DIR [FILTER] — every test against one build; called by
# `./build.sh test` (BUILD_DIR=build) and `./build.sh asan` (build/asan).
# Adds up unit tests, source checks, integration tests and fuzz smoke runs,
# and ends with the single line "N passed, N failed".
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"
BUILD=${1:-build}
FILTER=${2:-}
passed=0
failed=0
failures=()

# count OUTPUT — add the "<what>: N passed, M failed" line of a sub-runner.
count() {
    local line p f
    line=$(printf '%s\n' "$1" | grep -E '^[a-z-]+: [0-9]+ passed, [0-9]+ failed' | tail -n1)
    if [ -z "$line" ]; then
        failed=$((failed + 1)); failures+=("$2 (no summary line)"); return
    fi
    p=$(echo "$line" | sed -E 's/^[a-z-]+: ([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    passed=$((passed + p)); failed=$((failed + f))
    while read -r l; do failures+=("$l"); done < <(printf '%s\n' "$1" | grep -E '^FAIL ' | sed 's/^FAIL //')
}

echo "== unit tests ($BUILD)"
for t in "$BUILD"/unit/test_*; do
    [ -x "$t" ] || continue
    [ -n "$FILTER" ] && [[ "$t" != *"$FILTER"* ]] && continue
    out=$("$t" 2>&1); rc=$?
    printf '%s\n' "$out"
    count "$out" "$t"
    [ $rc -ne 0 ] && ! printf '%s\n' "$out" | grep -q '^FAIL' && { failed=$((failed + 1)); failures+=("$t exit $rc"); }
done

if [ -z "$FILTER" ]; then
    echo "== source checks"
    out=$(test/check-source.sh 2>&1); printf '%s\n' "$out"; count "$out" check-source
fi

echo "== integration tests ($BUILD)"
out=$(/usr/bin/python3 test/integration/run.py --build "$BUILD" ${FILTER:+--filter "$FILTER"} 2>&1 | tee >(cat >&2))
count "$out" integration

if [ -z "$FILTER" ] && [ -x test/fuzz/run.sh ] && command -v clang >/dev/null && [[ "$BUILD" != */asan ]]; then
    echo "== fuzz smoke runs"
    out=$(test/fuzz/run.sh "${MRS_FUZZ_SECONDS:-5}" 2>&1); printf '%s\n' "$out" | tail -n 20
    count "$out" fuzz
fi

if [ -z "$FILTER" ] && [ "$(id -u)" = 0 ] && [ "${DOCKER_TEST:-on}" != off ] && [[ "$BUILD" != */asan ]]; then
    echo "== docker image test (buildah)"
    out=$(test/docker/test.sh 2>&1); printf '%s\n' "$out" | grep -E '^(PASS|FAIL|SKIP) |^docker: '
    count "$out" docker
fi

if [ ${#failures[@]} -gt 0 ]; then
    echo "== failed:"
    printf '  %s\n' "${failures[@]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
