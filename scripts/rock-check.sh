#!/bin/sh
# Installs the rock with `luarocks make` (offline, builtin build) into a
# temporary tree for every runtime, loads it from a plain interpreter with
# only that tree on its paths, then removes it again.
set -eu
cd "$(dirname "$0")/.."
rockspec=rockspec/tcp-port-used-scm-1.rockspec
top=$(mktemp -d)
trap 'rm -rf "$top"' EXIT

for rt in 5.1 5.2 5.3 5.4 jit; do
  tree=$top/tree-$rt
  if [ "$rt" = jit ]; then
    cfg=$top/luajit-config.lua
    cat >"$cfg" <<CFG
lua_interpreter = "luajit"
variables = { LUA_INCDIR = "/usr/include/luajit-2.1", LUA_BINDIR = "/usr/bin" }
CFG
    lv=5.1 interp=luajit
  else
    cfg=/dev/null lv=$rt interp=lua$rt
  fi
  echo "== luarocks make on $rt"
  LUAROCKS_CONFIG=$cfg luarocks --lua-version="$lv" --tree="$tree" make "$rockspec" >"$top/log" 2>&1 ||
    { cat "$top/log"; exit 1; }
  # the builtin build leaves objects in the work tree: keep it clean
  rm -f csrc/*.o
  LUA_PATH="$tree/share/lua/$lv/?.lua;$tree/share/lua/$lv/?/init.lua" \
  LUA_CPATH="$tree/lib/lua/$lv/?.so" \
    $interp -e 'local t = require "tcp_port_used"
      assert(t.check(1, "127.0.0.1") == false)
      print("loaded tcp_port_used " .. t._VERSION .. " from the rock on " .. (jit and jit.version or _VERSION))'
  LUAROCKS_CONFIG=$cfg luarocks --lua-version="$lv" --tree="$tree" remove tcp-port-used >"$top/log" 2>&1 ||
    { cat "$top/log"; exit 1; }
  [ ! -e "$tree/lib/lua/$lv/tcp_port_used/core.so" ] || { echo "remove left the core behind"; exit 1; }
done
echo "rock: installed, loaded and removed on every runtime"
