#!/bin/sh
# make bench: SPEC's performance table measured on the module as users get
# it, a rock that `luarocks make` installs (LuaRocks' own CFLAGS, its tree's
# paths) into a throwaway tree, built from a copy of this checkout so that
# the build leaves nothing here. Then the table of single checks again from
# the build tree, in the same make run, to compare the two; then listen mode
# from the rock. Ratios are to C loops measured in the same run.
set -u
cd "$(dirname "$0")/.."

tmp=$(mktemp -d /tmp/tpu-bench-rock.XXXXXX) || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir -p "$tmp/src"
cp -R csrc lua bin rockspec "$tmp/src/" || exit 2
if ! (cd "$tmp/src" && luarocks --lua-version 5.4 make --tree "$tmp/tree" \
      rockspec/tcp-port-used-scm-1.rockspec) >"$tmp/luarocks.log" 2>&1; then
  cat "$tmp/luarocks.log"
  echo "bench: luarocks make failed" >&2
  exit 2
fi
share=$tmp/tree/share/lua/5.4 lib=$tmp/tree/lib/lua/5.4
# pinned to one CPU (the last; TPU_BENCH_CPU chooses), the C loops with it
pin=""
if command -v taskset >/dev/null 2>&1; then
  cpu=${TPU_BENCH_CPU:-$(($(nproc) - 1))}
  pin="taskset -c $cpu"
  echo "bench: pinned to CPU $cpu"
fi
flags=$(grep -m1 -E '^(gcc|cc) .* -c csrc/core.c' "$tmp/luarocks.log" | sed 's/ -I[^ ]*//g')
rock="a rock installed by luarocks make ($flags)"

LUA_PATH="$share/?.lua;$share/?/init.lua;;" LUA_CPATH="$lib/?.so;;" TPU_BENCH_FROM="$rock" \
  $pin lua5.4 bench/run.lua || exit 1
echo
LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/5.4/?.so;;' TPU_BENCH_ONLY=checks \
  $pin lua5.4 bench/run.lua || exit 1
echo
LUA_PATH="$share/?.lua;$share/?/init.lua;;" LUA_CPATH="$lib/?.so;;" TPU_BENCH_FROM="$rock" \
  $pin lua5.4 bench/listen.lua
echo
LUA_PATH="$share/?.lua;$share/?/init.lua;;" LUA_CPATH="$lib/?.so;;" TPU_BENCH_FROM="$rock" \
  $pin lua5.4 bench/explain.lua
echo
LUA_PATH="$share/?.lua;$share/?/init.lua;;" LUA_CPATH="$lib/?.so;;" TPU_BENCH_FROM="$rock" \
  $pin lua5.4 bench/procs.lua
