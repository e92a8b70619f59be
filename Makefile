# Sluice -- see README.md. Targets: all (build/sluice), run, test, test-asan, unit, lint, bench,
# fuzz, clean. Missing Debian packages are installed with apt-get when run as root.

PKGS      = luajit libevent libevent_openssl libcurl libpcre2-8 openssl
DEB_BUILD = gcc make pkg-config libluajit2-5.1-dev luajit2 libevent-dev libssl-dev \
            libcurl4-openssl-dev libpcre2-dev lua-cjson
DEB_TEST  = curl perl nginx wrk prometheus openssl clang libclang-rt-14-dev

CC       ?= gcc
OPT      ?= -O2
CFLAGS_W  = -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -g $(OPT) -fno-omit-frame-pointer
SAN      ?=
BUILD    ?= build
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS_ALL = $(CFLAGS_W) $(SAN) -Icore $(PKG_CFLAGS)
LDFLAGS_ALL = -rdynamic $(SAN)

SRCS     = $(wildcard core/*.c)
OBJS     = $(patsubst core/%.c,$(BUILD)/obj/%.o,$(SRCS))
UNIT_C   = $(wildcard t/unit/*.c)
UNIT_BIN = $(patsubst t/unit/%.c,$(BUILD)/t/unit/%,$(UNIT_C))
JOBS    ?= 2
TEST_DIRS = $(wildcard t/unit t/mock t/http t/router t/admin t/plugins t/clients)

.PHONY: all deps deps-test run test test-asan unit lint bench fuzz clean

all: deps $(BUILD)/sluice

# deps: install what is missing (as root), or say what to install.
deps:
	@missing=""; for p in $(DEB_BUILD); do \
	    dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then \
	        echo "installing:$$missing"; \
	        (apt-get install -y --no-install-recommends $$missing >/dev/null 2>&1 || \
	         (apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive \
	          apt-get install -y --no-install-recommends $$missing >/dev/null)) || exit 1; \
	    else echo "missing Debian packages, run: sudo apt-get install$$missing"; exit 1; fi; \
	fi

deps-test: deps
	@missing=""; for p in $(DEB_TEST); do \
	    dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then \
	        echo "installing:$$missing"; \
	        (apt-get install -y --no-install-recommends $$missing >/dev/null 2>&1 || \
	         (apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive \
	          apt-get install -y --no-install-recommends $$missing >/dev/null)) || exit 1; \
	    else echo "missing Debian packages, run: sudo apt-get install$$missing"; exit 1; fi; \
	fi
	@if [ -f t/clients/package.json ] && [ ! -d t/clients/node_modules/openai ]; then \
	    (cd t/clients && npm install --no-audit --no-fund --loglevel=error >/dev/null) || \
	    echo "npm install failed: the JavaScript client tests will be skipped"; fi

$(BUILD)/obj/%.o: core/%.c $(wildcard core/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/sluice: $(OBJS)
	$(CC) $(LDFLAGS_ALL) -o $@ $(OBJS) $(PKG_LIBS) -lpthread -lm -ldl

# C unit tests: t/unit/x.c links core/x.c, core/log.c and what its "links:" line names.
$(BUILD)/t/unit/%: t/unit/%.c core/%.c core/log.c $(wildcard core/*.h) t/unit/tap.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_W) $(SAN) -O1 -Icore $(PKG_CFLAGS) $< core/$*.c core/log.c \
	    $$(sed -n '1s|.*links:\(.*\)\*/.*|\1|p' $< | tr ' ' '\n' | grep -v "core/$*.c" | tr '\n' ' ') \
	    -o $@ $(PKG_LIBS) -lpthread -lm

unit: deps $(UNIT_BIN)
	perl t/harness.pl -j $(JOBS) $(UNIT_BIN) t/unit

run: all
	@mkdir -p logs data
	$(BUILD)/sluice -c conf/sluice.json -p .

test: all deps-test $(UNIT_BIN)
	perl t/harness.pl -j $(JOBS) $(UNIT_BIN) $(TEST_DIRS)

test-asan:
	$(MAKE) BUILD=build/asan CC=clang OPT=-O1 \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" all
	$(MAKE) BUILD=build/asan CC=clang OPT=-O1 \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" deps-test \
	    build/asan/t/unit/http_parse build/asan/t/unit/shm build/asan/t/unit/upstream_resp \
	    build/asan/t/unit/capture build/asan/t/unit/sse_scan build/asan/t/unit/json_scan \
	    build/asan/t/unit/json_decode build/asan/t/unit/lua_json build/asan/t/unit/find \
	    build/asan/t/unit/fionread
	SLUICE_BIN=build/asan/sluice SLUICE_START_TIMEOUT=40 \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    perl t/harness.pl -j $(JOBS) build/asan/t/unit/* $(TEST_DIRS)

lint:
	clang-format --dry-run --Werror core/*.c core/*.h 2>/dev/null || true
	@if command -v luacheck >/dev/null; then luacheck -q lua plugins t/bench/plugins; \
	else echo "luacheck not installed (apt-get install lua-check)"; fi

bench: all deps-test
	t/bench/run.sh

fuzz:
	@mkdir -p $(BUILD)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Icore t/fuzz/http_parse_fuzz.c \
	    core/http_parse.c core/log.c -o $(BUILD)/http_parse_fuzz
	@mkdir -p $(BUILD)/fuzz-corpus
	$(BUILD)/http_parse_fuzz -max_total_time=60 -max_len=4096 $(BUILD)/fuzz-corpus t/fuzz/corpus
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Icore t/fuzz/upstream_resp_fuzz.c \
	    core/upstream_resp.c core/log.c -o $(BUILD)/upstream_resp_fuzz
	@mkdir -p $(BUILD)/fuzz-resp-corpus
	$(BUILD)/upstream_resp_fuzz -max_total_time=30 -max_len=4096 $(BUILD)/fuzz-resp-corpus
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Icore $(PKG_CFLAGS) t/fuzz/scan_fuzz.c \
	    core/find.c core/sse_scan.c core/json_decode.c core/json_scan.c core/lua_json.c \
	    core/log.c -o $(BUILD)/scan_fuzz $(PKG_LIBS) -lm
	@mkdir -p $(BUILD)/fuzz-scan-corpus
	$(BUILD)/scan_fuzz -max_total_time=30 -max_len=4096 $(BUILD)/fuzz-scan-corpus t/fuzz/corpus-scan

clean:
	rm -rf build
