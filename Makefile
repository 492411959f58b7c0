# tcp-port-used: build, test, lint and benchmark on every Lua runtime.
# LuaRocks installs with its builtin build (rockspec/); this Makefile is for
# development and honours LuaRocks' variables (CC CFLAGS LIBFLAG LUA_INCDIR
# LIBDIR LUADIR) for `make install`.

LUA_VERSION ?= 5.4
LUA         ?= lua$(LUA_VERSION)
LUA_INCDIR  ?= /usr/include/lua$(LUA_VERSION)
CC          ?= cc
CFLAGS      ?= -O2 -fPIC
LIBFLAG     ?= -shared
PREFIX      ?= /usr/local
LIBDIR      ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
LUADIR      ?= $(PREFIX)/share/lua/$(LUA_VERSION)
BINDIR      ?= $(PREFIX)/bin

WARN = -std=c99 -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
       -Werror -fvisibility=hidden
SAN  = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

# Lua 5.5 joins once scripts/deps.sh has built it into build/lua5.5 (from
# ../shared/lua5.5; Debian has no package): `make test` runs it then.
LUA55    = build/lua5.5
RUNTIMES = 5.1 5.2 5.3 5.4 jit $(if $(wildcard $(LUA55)/.built),5.5)
CSRC     = $(wildcard csrc/*.c csrc/*.h)

incdir_5.1 = /usr/include/lua5.1
incdir_5.2 = /usr/include/lua5.2
incdir_5.3 = /usr/include/lua5.3
incdir_5.4 = /usr/include/lua5.4
incdir_jit = /usr/include/luajit-2.1
incdir_5.5 = $(LUA55)/include

.PHONY: all deps core docs test test-runtimes test-asan test-valgrind test-portable test-0700 check-musl rock lint demo bench bench-portable install clean fuzz fuzz-long

FUZZ_SECONDS ?= 60

all: $(foreach r,$(RUNTIMES),build/$(r)/tcp_port_used/core.so build/$(r)/tcp_port_used/exec.so) \
     build/test/sigstorm.so build/test/notify_recv

deps:
	@sh scripts/deps.sh

# types/, docs/api.md and the CLI's help, rendered from the one declaration
# lua/tcp_port_used/api.lua (spec/docs_spec.lua fails when they are stale).
docs:
	$(LUA) scripts/docgen.lua

# The core for one runtime, for `make install` and LuaRocks-like builds.
core: tcp_port_used/core.so tcp_port_used/exec.so

tcp_port_used/core.so: $(CSRC)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) -I$(LUA_INCDIR) $(LIBFLAG) -o $@ csrc/core.c

tcp_port_used/exec.so: csrc/exec.c csrc/codes.c csrc/compat.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) -I$(LUA_INCDIR) $(LIBFLAG) -o $@ csrc/exec.c

build/%/tcp_port_used/core.so: $(CSRC)
	@mkdir -p $(@D)
	$(CC) -O2 -fPIC $(WARN) -I$(incdir_$*) -shared -o $@ csrc/core.c

build/%/tcp_port_used/exec.so: csrc/exec.c csrc/codes.c csrc/compat.h
	@mkdir -p $(@D)
	$(CC) -O2 -fPIC $(WARN) -I$(incdir_$*) -shared -o $@ csrc/exec.c

# The core with every Linux-only path compiled out (csrc/platform.h): the
# portable paths, built and tested here (make test-portable).
build/portable/tcp_port_used/core.so: $(CSRC)
	@mkdir -p $(@D)
	$(CC) -O2 -fPIC -DTPU_PORTABLE $(WARN) -I$(incdir_5.4) -shared -o $@ csrc/core.c

build/portable/tcp_port_used/exec.so: build/5.4/tcp_port_used/exec.so
	@mkdir -p $(@D)
	cp $< $@

build/asan/tcp_port_used/core.so: $(CSRC)
	@mkdir -p $(@D)
	$(CC) -O1 -g -fPIC $(SAN) $(WARN) -I$(incdir_5.4) -shared -o $@ csrc/core.c

# Test helpers loaded into child processes by the specs (not part of the rock).
build/test/sigstorm.so: spec/native/sigstorm.c
	@mkdir -p $(@D)
	$(CC) -O2 -fPIC -shared -Wall -Wextra -Werror -o $@ $<

build/test/notify_recv: spec/native/notify_recv.c
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $<

build/bench/raw_connect: bench/raw_connect.c
	@mkdir -p $(@D)
	$(CC) -O2 $(WARN) -o $@ $<

# Every spec on every runtime, the runs overlapping (scripts/test.sh); ends
# with the ten slowest runs and one "N passed, N failed" line. A make of its
# own after deps, so that a Lua 5.5 deps has just built is among RUNTIMES.
test: deps
	@$(MAKE) --no-print-directory test-runtimes

test-runtimes: all
	@sh scripts/test.sh $(RUNTIMES)

build/asan/tcp_port_used/exec.so: csrc/exec.c csrc/codes.c csrc/compat.h
	@mkdir -p $(@D)
	$(CC) -O1 -g -fPIC $(SAN) $(WARN) -I$(incdir_5.4) -shared -o $@ csrc/exec.c

test-asan: deps build/asan/tcp_port_used/core.so build/asan/tcp_port_used/exec.so build/test/sigstorm.so build/test/notify_recv
	@sh scripts/test.sh asan

test-valgrind: deps all
	@sh scripts/test.sh valgrind

# The whole suite on Lua 5.4 against the portable core; listen mode and
# owner answer ENOTSUP there, and their specs expect it.
test-portable: deps all build/portable/tcp_port_used/core.so build/portable/tcp_port_used/exec.so
	@sh scripts/test.sh portable

# The specs whose servers run as other users (nginx, PostgreSQL, owner,
# the differential table), on 5.4, from a clone of HEAD in a 0700
# directory, as a checkout in /root is.
test-0700: deps
	@sh scripts/test-0700.sh

# The core and exec.c compiled with musl-gcc (Alpine) under -Werror.
check-musl: deps
	@sh scripts/check-musl.sh

# Both rockspecs linted; the release's source rock packed (offline) into
# build/rock/ and installed into a fresh tree on every runtime.
rock: deps
	@sh scripts/rock-check.sh

lint: deps
	luacheck lua spec bench examples bin/tcp-port-used
	cppcheck --quiet --error-exitcode=1 --enable=warning,style,performance,portability \
	  --std=c99 --inline-suppr --suppress=missingIncludeSystem --suppress=toomanyconfigs \
	  -I csrc -I /usr/include/lua5.4 csrc/core.c

demo: deps build/5.4/tcp_port_used/core.so
	@LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/5.4/?.so;;' lua5.4 examples/demo.lua

# From a rock installed by `luarocks make` into a throwaway tree, and the
# single checks from the build tree too (scripts/bench.sh).
bench: deps all build/bench/raw_connect
	@sh scripts/bench.sh

# The check tables of make bench against the portable core.
bench-portable: deps all build/portable/tcp_port_used/core.so build/bench/raw_connect
	@TPU_BENCH_BUILD=portable LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/portable/?.so;;' \
	  lua5.4 bench/run.lua

# libFuzzer + ASan + UBSan over the core's functions, in a network
# namespace of its own (fuzzed names and addresses stay on this machine).
build/fuzz/fuzz_core: fuzz/fuzz_core.c $(CSRC)
	@mkdir -p $(@D)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	  -I/usr/include/lua5.4 -o $@ fuzz/fuzz_core.c -llua5.4 -lm

fuzz: deps build/fuzz/fuzz_core
	@mkdir -p build/fuzz/corpus
	unshare -n sh -c 'ip link set lo up && build/fuzz/fuzz_core -max_total_time=$(FUZZ_SECONDS) \
	  -timeout=10 -max_len=512 -print_final_stats=1 -artifact_prefix=build/fuzz/ \
	  build/fuzz/corpus fuzz/seeds'

fuzz-long:
	$(MAKE) fuzz FUZZ_SECONDS=3600

install: core
	install -d $(DESTDIR)$(LIBDIR)/tcp_port_used $(DESTDIR)$(LUADIR)/tcp_port_used
	install -m 755 tcp_port_used/core.so $(DESTDIR)$(LIBDIR)/tcp_port_used/core.so
	install -m 755 tcp_port_used/exec.so $(DESTDIR)$(LIBDIR)/tcp_port_used/exec.so
	install -d $(DESTDIR)$(LUADIR)/tcp_port_used/transport $(DESTDIR)$(LUADIR)/tcp_port_used/ready
	install -m 644 lua/tcp_port_used/*.lua $(DESTDIR)$(LUADIR)/tcp_port_used/
	install -m 644 lua/tcp_port_used/transport/*.lua $(DESTDIR)$(LUADIR)/tcp_port_used/transport/
	install -m 644 lua/tcp_port_used/ready/*.lua $(DESTDIR)$(LUADIR)/tcp_port_used/ready/
	install -d $(DESTDIR)$(BINDIR)
	install -m 755 bin/tcp-port-used $(DESTDIR)$(BINDIR)/tcp-port-used

clean:
	rm -rf build tcp_port_used *.o csrc/*.o
