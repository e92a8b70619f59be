#!/usr/bin/env bash
# lua_cost.sh -- instructions per request spent in Lua, counted by callgrind (not timed, so a
# busy machine does not move the numbers much). One Sluice worker runs under
# `valgrind --tool=callgrind`; an nginx upstream serves a 1 KB JSON (plain proxy) and the
# canned provider files of t/bench/ai (ai-proxy). For each case the worker's counters are
# zeroed after a warm-up, N requests are sent one after the other on one keep-alive connection
# (curl), and the counters are dumped; the dump is split by object:
#
#   luajit   libluajit-5.1 (interpreter, GC, allocator, fast functions, lua_* C API)
#   jit      machine code the JIT compiled (callgrind's "???" object)
#   cjson    lua-cjson
#   lua-c    Sluice's Lua-callable C (core/lua_*.c: sluice.http, .upstream, shm, ...)
#   total    everything in the worker's user space (kernel time is not counted)
#
#   t/bench/lua_cost.sh                       # plain, ai, ai-stream; N=2000 each
#   N=5000 t/bench/lua_cost.sh plain          # one case, more requests
#   KEEP=1 t/bench/lua_cost.sh plain          # keep the scratch dir (callgrind files)
#
# Cases: plain (GET /bench/echo, route with bench-trivial, access log on, metrics on),
# ai (POST 1 KB chat body, ai-proxy, non-streaming), ai-stream (same, 66-event SSE answer),
# floor (the ai body through t/bench/plugins/bench-ai-floor.lua: what any AI proxy must do).
# Knobs: N (2000), WARM (300), PORT_BASE (28000: uses PORT_BASE..PORT_BASE+3), TMPROOT
# (/tmp/wtlua), JITV=<file> (write LuaJIT's trace log, jit.v, there; JITV_DUMP=<jit.dump
# flags, e.g. "tbim"> for jit.dump instead), NOVG=1 (no valgrind, no counts: with JITV, to
# see quickly which traces the request path compiles or aborts), JITOFF=1 (LuaJIT's JIT off:
# steadier counts of the Lua work, for comparing small changes), LJLIB=<dir> (a
# libluajit-5.1.so.2 built with symbols, so that callgrind_annotate names LuaJIT's functions). Loopback only; every wait and every load run is bounded; what it starts is
# killed on exit. The window between zero and dump also contains the worker's timers (config
# poll 1/s, metrics flush 2/s): a few hundred instructions per request at most.
set -eu -o pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
N=${N:-2000}
WARM=${WARM:-300}
BASE=${PORT_BASE:-28000}
TMPROOT=${TMPROOT:-/tmp/wtlua}
CASES=${*:-plain ai ai-stream}
GW_PORT=$BASE
UP_PORT=$((BASE + 1))
METRICS_PORT=$((BASE + 2))

for tool in valgrind callgrind_control nginx curl perl; do
    command -v $tool >/dev/null || { echo "lua_cost: $tool not found" >&2; exit 2; }
done
[ -x build/sluice ] || { echo "lua_cost: build/sluice missing (make)" >&2; exit 2; }

mkdir -p "$TMPROOT"
D=$(mktemp -d "$TMPROOT/cost.XXXXXX")
chmod 0711 "$D"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do
        kill -QUIT "$p" 2>/dev/null || true
    done
    for _ in $(seq 1 100); do          # valgrind takes a while to write its last dump
        alive=0
        for p in "${PIDS[@]}"; do
            kill -0 "$p" 2>/dev/null && alive=1
        done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
    done
    if [ -z "${KEEP:-}" ]; then
        rm -rf "$D"
    else
        echo "kept $D"
    fi
}
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
    local i
    for i in $(seq 1 "$2"); do
        port_open "$1" && return 0
        sleep 0.2
    done
    echo "lua_cost: nothing listens on 127.0.0.1:$1" >&2
    return 1
}

# ---- upstream: nginx with the 1 KB JSON and the canned provider files
FIX=$D/fixtures
mkdir -p "$FIX/v1/chat" "$FIX/stream/v1/chat" "$D/nginx/tmp" "$D/sluice/logs" "$D/sluice/data"
cp t/bench/ai/chat.json "$FIX/v1/chat/completions"
cp t/bench/ai/stream-66.sse "$FIX/stream/v1/chat/completions"
chmod -R a+rX "$FIX"
BODY=$(perl -e '
    my @items; my $i = 0;
    while (1) {
        my $s = q({"id":"bench","object":"chat.completion","items":[) . join(",", @items)
              . q(],"pad":");
        my $pad = 1023 - length($s) - 2;
        if ($pad < 40) { print $s, "x" x $pad, q("}); exit }
        push @items, sprintf(q({"n":%d,"v":"value-%04d"}), $i, $i); $i++;
    }')
cat >"$D/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $D/nginx/nginx.pid;
error_log $D/nginx/error.log error;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $D/nginx/tmp/client;
    proxy_temp_path $D/nginx/tmp/proxy;
    fastcgi_temp_path $D/nginx/tmp/fastcgi;
    uwsgi_temp_path $D/nginx/tmp/uwsgi;
    scgi_temp_path $D/nginx/tmp/scgi;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    etag off;
    types { }
    server {
        listen 127.0.0.1:$UP_PORT;
        root $FIX;
        error_page 405 =200 \$uri;
        location = /bench/echo { default_type application/json; return 200 '$BODY
'; }
        location /stream/ { default_type text/event-stream; add_header Cache-Control no-cache; }
        location / { default_type application/json; }
    }
}
EOF
nginx -p "$D/nginx" -e "$D/nginx/error.log" -c "$D/nginx/nginx.conf" >"$D/nginx/stderr.log" 2>&1 &
PIDS+=($!)
wait_port "$UP_PORT" 50

# ---- Sluice: one worker under callgrind
UP="http://127.0.0.1:$UP_PORT"
AI='"ai-proxy": {"provider": "openai",
                 "auth": {"header": {"Authorization": "Bearer sk-gateway"}},
                 "options": {"model": "gpt-4o-mini"}, "override": {"endpoint": "ENDPOINT"}}'
cat >"$D/sluice/routes.json" <<EOF
{"routes": [
  {"id": "1", "uri": "/bench/echo", "plugins": {"bench-trivial": {}},
   "upstream": {"type": "roundrobin", "nodes": {"127.0.0.1:$UP_PORT": 1}}},
  {"id": "chat", "uri": "/v1/chat/completions", "plugins": {${AI/ENDPOINT/$UP}}},
  {"id": "stream", "uri": "/stream/v1/chat/completions",
   "plugins": {${AI/ENDPOINT/$UP/stream/v1/chat/completions}}},
  {"id": "floor", "uri": "/floor/v1/chat/completions",
   "plugins": {"bench-ai-floor": {"url": "$UP/v1/chat/completions"}}}
]}
EOF
PLUGINS='"bench-trivial", "ai-proxy", "bench-ai-floor"'
if [ -n "${JITV:-}" ]; then
    # a plugin no route uses: loading it starts LuaJIT's trace log (jit.v, or jit.dump
    # with JITV_DUMP=<flags>) into $JITV for the worker's whole life
    mkdir -p "$D/plugins"
    if [ -n "${JITV_DUMP:-}" ]; then
        start="require(\"jit.dump\").start(\"${JITV_DUMP}\", \"$JITV\")"
    else
        start="require(\"jit.v\").start(\"$JITV\")"
    fi
    jitlib=$(ls -d /usr/share/luajit-2.1* 2>/dev/null | head -n1)
    start="package.path = package.path .. \";$jitlib/?.lua\"; $start"
    printf '%s\nreturn { name = "jit-trace", priority = 0, schema = { type = "object" } }\n' \
        "$start" >"$D/plugins/jit-trace.lua"
    PLUGINS="$PLUGINS, \"jit-trace\""
fi
if [ -n "${JITOFF:-}" ]; then
    # the interpreter only: slower, but the counts hardly move between runs (+-0.5k at N=4000),
    # which makes small changes measurable; the JIT's own choices vary from run to run
    mkdir -p "$D/plugins"
    printf 'jit.off()\nreturn { name = "jit-off", priority = 0, schema = { type = "object" } }\n' \
        >"$D/plugins/jit-off.lua"
    PLUGINS="$PLUGINS, \"jit-off\""
fi
cat >"$D/sluice/sluice.json" <<EOF
{"listen": ["127.0.0.1:$GW_PORT"], "workers": 1, "log_level": "warn", "admin": false,
 "metrics": {"listen": "127.0.0.1:$METRICS_PORT"},
 "config": {"provider": "file", "file": "$D/sluice/routes.json"},
 "plugins": [$PLUGINS], "plugin_paths": ["$ROOT/t/bench/plugins", "$D/plugins"]}
EOF
VG=(valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$D/cg.%p")
[ -n "${NOVG:-}" ] && VG=()
LD_LIBRARY_PATH=${LJLIB:-${LD_LIBRARY_PATH:-}} "${VG[@]}" build/sluice -c "$D/sluice/sluice.json" -p "$D/sluice" >"$D/valgrind.log" 2>&1 &
MASTER=$!
PIDS+=($MASTER)
wait_port "$GW_PORT" 300
WORKER=
for _ in $(seq 1 50); do
    WORKER=$(ps -o pid= --ppid "$MASTER" | head -n1 | tr -d ' ')
    [ -n "$WORKER" ] && break
    sleep 0.2
done
[ -n "$WORKER" ] || { echo "lua_cost: no worker" >&2; exit 1; }

# perl t/bench/ai/bench.pl's 1 KB chat bodies
perl -e '
    for my $stream (0, 1) {
        my $head = q({"model":"gpt-4o-mini",) . ($stream ? q("stream":true,) : "")
                 . q("temperature":0.7,"messages":[{"role":"system","content":"You are a )
                 . q(helpful assistant. Answer briefly."},{"role":"user","content":");
        my $tail = q("}]}); my $text = "Tell me a story about a lighthouse keeper and the "
                 . "ships she guides home. ";
        my $fill = 1024 - length($head) - length($tail);
        open my $f, ">", "'"$D"'/body$stream.json" or die;
        print $f $head, substr($text x (1 + int($fill / length $text)), 0, $fill), $tail;
    }'

# send COUNT requests of a case on one keep-alive connection; fails on any non-2xx
send() {
    local case=$1 count=$2 cfg=$D/curl.cfg path args=()
    case $case in
        plain) path=/bench/echo ;;
        ai) path=/v1/chat/completions; args=(--data-binary "@$D/body0.json") ;;
        ai-stream) path=/stream/v1/chat/completions; args=(--data-binary "@$D/body1.json") ;;
        floor) path=/floor/v1/chat/completions; args=(--data-binary "@$D/body0.json") ;;
        *) echo "lua_cost: unknown case $case" >&2; return 2 ;;
    esac
    [ ${#args[@]} -gt 0 ] && args+=(-H "Content-Type: application/json"
                                     -H "Authorization: Bearer sk-client-bench")
    perl -e 'print "url = \"http://127.0.0.1:'"$GW_PORT$path"'\"\noutput = \"/dev/null\"\n"
             x '"$count" >"$cfg"
    local codes
    codes=$(timeout 900 curl -s --fail-early -K "$cfg" "${args[@]}" -w '%{http_code}\n' |
            sort | uniq -c | tr -s ' ')
    if [ "$(echo "$codes" | wc -l)" != 1 ] || ! echo "$codes" | grep -q " 200$"; then
        echo "lua_cost: $case: unexpected answers: $codes" >&2
        return 1
    fi
}

# sums a callgrind dump's self cost (Ir) per object, and per file inside the sluice binary
summarise() {
    perl -e '
        my ($file, $n, $case) = @ARGV;
        open my $f, "<", $file or die "$file: $!";
        my (%name, %fname, $ob, $fl, $skip, %by);
        while (<$f>) {
            # names are defined once per file, on whichever line first uses the id
            if (/^(c?)ob=\((\d+)\)(?: (.*))?$/) { $name{$2} = $3 if defined $3;
                                                  $ob = $name{$2} if !$1; next }
            if (/^ob=(.*)$/) { $ob = $1; next }
            if (/^(c?)f[lie]=\((\d+)\)(?: (.*))?$/) { $fname{$2} = $3 if defined $3;
                                                     $fl = $fname{$2} if !$1; next }
            if (/^f[lie]=(.*)$/) { $fl = $1; next }
            if (/^calls=/) { $skip = 1; next }
            if (/^[0-9+*-]/) {
                if ($skip) { $skip = 0; next }
                my @c = split;
                my $ir = $c[1] // 0;
                my $cat = !defined $ob || $ob =~ /\?\?\?/ ? "jit"
                        : $ob =~ /libluajit/ ? "luajit"
                        : $ob =~ /cjson/ ? "cjson"
                        : $ob =~ m{/sluice$} && ($fl // "") =~ m{lua_\w+\.c} ? "lua-c"
                        : "other";
                $by{$cat} += $ir;
                $by{total} += $ir;
            }
        }
        my $lua = ($by{luajit} // 0) + ($by{jit} // 0) + ($by{cjson} // 0) + ($by{"lua-c"} // 0);
        printf "%-10s %6d req  Ir/req: lua %7.0f = luajit %7.0f + jit %6.0f + cjson %6.0f"
             . " + lua-c %6.0f   total %7.0f\n", $case, $n, $lua / $n, ($by{luajit} // 0) / $n,
             ($by{jit} // 0) / $n, ($by{cjson} // 0) / $n, ($by{"lua-c"} // 0) / $n,
             $by{total} / $n;
    ' "$@"
}

dumps=0
for case in $CASES; do
    send "$case" "$WARM"
    if [ -n "${NOVG:-}" ]; then       # no counts: only the requests (for JITV)
        send "$case" "$N"
        continue
    fi
    timeout 120 callgrind_control -z "$WORKER" >/dev/null 2>&1
    send "$case" "$N"
    timeout 120 callgrind_control -d "$case" "$WORKER" >/dev/null 2>&1
    dumps=$((dumps + 1))
    file=
    for _ in $(seq 1 100); do
        file=$(ls "$D/cg.$WORKER".* 2>/dev/null | sort -t. -k3 -n | tail -n1 || true)
        [ -n "$file" ] && [ "${file##*.}" = "$dumps" ] && break
        sleep 0.1
    done
    summarise "$file" "$N" "$case"
done
