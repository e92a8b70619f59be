#!/usr/bin/env bash
# ai.sh -- the ai-proxy benchmark: builds the c=1 latency tool (t/bench/ai/latency.c ->
# build/bench/ai_latency) and runs t/bench/ai/bench.pl, which starts a canned provider (nginx
# serving t/bench/ai/chat.json and the 66-event t/bench/ai/stream-66.sse), nginx proxy_pass
# and Sluice's ai-proxy in front of it, and compares them with wrk and latency.c. Prints a
# summary block at the end; exit 1 when a bar is missed.
#
#   t/bench/ai.sh                                  # needs build/sluice (make)
#   BENCH_DURATION=5 BENCH_ROUNDS=1 t/bench/ai.sh  # a quick look
#   BENCH_PIN=1 t/bench/ai.sh                      # gateways on CPU 1, load on CPU 0
#
# Knobs: see the top of t/bench/ai/bench.pl.
set -eu -o pipefail

cd "$(dirname "$0")/../.."

mkdir -p build/bench
if [ ! -x build/bench/ai_latency ] || [ t/bench/ai/latency.c -nt build/bench/ai_latency ]; then
    gcc -std=gnu11 -O2 -Wall -Wextra -Werror t/bench/ai/latency.c -o build/bench/ai_latency
fi

exec timeout 1800 perl t/bench/ai/bench.pl "$@"
