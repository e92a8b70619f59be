#!/usr/bin/env bash
# run.sh -- `make bench`: every benchmark in t/bench, one after the other, then one summary
# block with the numbers of each (README.md's benchmark section is a copy of it).
#
#   t/bench/run.sh                  # core router parse admin ai
#   t/bench/run.sh core router      # just those parts
#   t/bench/run.sh profile          # perf + LuaJIT profile of a worker under load
#
# Parts: core (t/bench/core.pl: Sluice vs nginx proxy_pass, idle RSS, 10 vs 10,000 routes end
# to end), router (t/bench/router_bench.lua), parse (t/bench/parse_bench.c, needs
# libhttp-parser-dev), admin (t/bench/admin_bench.pl), ai (t/bench/ai.sh: ai-proxy vs nginx),
# profile (core.pl --profile; not in the default set). A part whose file is missing is
# skipped. Knobs are environment variables, see t/bench/README.md. Exit status 1
# when a part failed or missed its bar; the other parts still run.
set -u -o pipefail

cd "$(dirname "$0")/../.." || exit 1

parts=("$@")
if [ ${#parts[@]} -eq 0 ]; then
    parts=(core router parse admin ai)
fi

out=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench-run-XXXXXX")
trap 'rm -rf "$out"' EXIT
status=0
declare -A result

# run NAME CMD...: runs a part with its output shown and kept; records ok / FAILED (rc)
run() {
    local name=$1 rc
    shift
    echo "=== $name: $*"
    "$@" 2>&1 | tee "$out/$name.log"
    rc=$?
    if [ $rc -eq 0 ]; then
        result[$name]=ok
    else
        result[$name]="exit $rc: a bar was missed or the run failed"
        status=1
    fi
    echo
}

parse_bench() {
    if [ ! -f /usr/include/http_parser.h ]; then
        echo "skipped: needs libhttp-parser-dev (apt-get install libhttp-parser-dev)"
        return 0
    fi

    mkdir -p build/bench &&
    gcc -std=gnu11 -O2 -Icore t/bench/parse_bench.c core/http_parse.c core/log.c \
        -o build/bench/parse_bench -lhttp_parser &&
    timeout 300 build/bench/parse_bench
}

for part in "${parts[@]}"; do
    case $part in
    core)    run core timeout 1800 perl t/bench/core.pl ;;
    router)  run router timeout 600 luajit t/bench/router_bench.lua ;;
    parse)   run parse parse_bench ;;
    admin)
        if [ -f t/bench/admin_bench.pl ]; then
            run admin timeout 1800 perl t/bench/admin_bench.pl
        fi
        ;;
    ai)
        if [ -f t/bench/ai.sh ]; then
            run ai timeout 1800 bash t/bench/ai.sh
        fi
        ;;
    profile) run profile timeout 600 perl t/bench/core.pl --profile ;;
    *)       echo "unknown part: $part (core router parse admin ai profile)"; status=1 ;;
    esac
done

# summary: the blocks core.pl and ai.sh print between "====" lines, the router and parser
# lines, admin_bench's closing block
echo "=================================== Sluice benchmark summary ==================================="
for part in "${parts[@]}"; do
    log=$out/$part.log
    [ -f "$log" ] || continue
    echo "--- $part: ${result[$part]}"
    case $part in
    core|ai) awk '/^====/ { n++; next } n == 1' "$log" ;;
    admin)   awk '/^== Admin API/ { p = 1 } p' "$log" | grep . || tail -n 15 "$log" ;;
    profile) sed -n '/^== perf: top 15/,/^$/p' "$log" ;;
    *)       cat "$log" ;;
    esac
done
echo "=================================================================================================="
exit $status
