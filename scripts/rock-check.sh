#!/bin/sh
# The rock, offline, on every runtime:
#  1. `luarocks lint` on both rockspecs;
#  2. `luarocks make` of scm-1 into a temporary tree, load, `luarocks remove`;
#  3. `luarocks pack` of the versioned rockspec: its git source is this
#     working tree, committed and tagged in a throwaway repository that git
#     substitutes for the rockspec's URL (url.<dir>.insteadOf), so the rock
#     is packed exactly as it would be from the published repository;
#  4. that source rock installed with `luarocks install` into a fresh tree
#     (no server needed: the only dependency is the interpreter), loaded
#     from a plain interpreter with only that tree on its paths, and its
#     command run;
#  5. the same install on a platform the rock does not support (LuaRocks
#     told it runs on Windows) refused before anything is built.
# The source rock is left in build/rock/ (what `luarocks upload` takes).
set -eu
cd "$(dirname "$0")/.."
scm=rockspec/tcp-port-used-scm-1.rockspec
release=$(ls rockspec/tcp-port-used-[0-9]*.rockspec)
[ "$(echo "$release" | wc -l)" -eq 1 ] || { echo "rock-check: expected one versioned rockspec: $release"; exit 1; }
version=$(echo "$release" | sed -E 's#.*tcp-port-used-([0-9.]+)-[0-9]+\.rockspec#\1#')
rockver=$(echo "$release" | sed -E 's#.*tcp-port-used-([0-9.]+-[0-9]+)\.rockspec#\1#')
url=$(sed -nE 's#^ *url = "git\+([^"]+)".*#\1#p' "$release")
top=$(mktemp -d)
trap 'rm -rf "$top"' EXIT

for r in "$scm" "$release"; do
  luarocks lint "$r" >"$top/log" 2>&1 || { cat "$top/log"; echo "rock-check: luarocks lint $r failed"; exit 1; }
done
echo "== luarocks lint: both rockspecs clean"

cat >"$top/luajit-config.lua" <<CFG
lua_interpreter = "luajit"
variables = { LUA_INCDIR = "/usr/include/luajit-2.1", LUA_BINDIR = "/usr/bin" }
CFG
# luarocks with the settings of one runtime: 5.1 5.2 5.3 5.4 or jit
rocks() {
  rt=$1
  shift
  if [ "$rt" = jit ]; then
    LUAROCKS_CONFIG=$top/luajit-config.lua luarocks --lua-version=5.1 "$@"
  else
    LUAROCKS_CONFIG=/dev/null luarocks --lua-version="$rt" "$@"
  fi
}
interp() { if [ "$1" = jit ]; then echo luajit; else echo "lua$1"; fi; }
lv() { if [ "$1" = jit ]; then echo 5.1; else echo "$1"; fi; }

# Loads tcp_port_used from tree only and prints its version; $3: expected.
load_from() {
  rt=$1 tree=$2 want=$3 v=$(lv "$1")
  LUA_PATH="$tree/share/lua/$v/?.lua;$tree/share/lua/$v/?/init.lua" \
  LUA_CPATH="$tree/lib/lua/$v/?.so" WANT=$want \
    "$(interp "$rt")" -e 'local t, want = require "tcp_port_used", os.getenv("WANT")
      assert(t.check(1, "127.0.0.1") == false)
      assert(t._VERSION == want, "version " .. t._VERSION .. ", expected " .. want)
      assert(select(2, require("tcp_port_used.core").diag_check()) ~= "ENOTSUP")
      print("loaded tcp_port_used " .. t._VERSION .. " from the rock on " .. (jit and jit.version or _VERSION))'
}

core_version=$(sed -nE 's/^#define TPU_VERSION "([^"]+)"/\1/p' csrc/core.c)
for rt in 5.1 5.2 5.3 5.4 jit; do
  tree=$top/tree-$rt
  echo "== luarocks make $scm on $rt"
  rocks "$rt" --tree="$tree" make "$scm" >"$top/log" 2>&1 || { cat "$top/log"; exit 1; }
  # the builtin build leaves objects and this runtime's core in the work
  # tree: keep it clean (a ./tcp_port_used/core.so of another Lua would be
  # found on the default ./?.so path by whatever runs here next)
  rm -rf csrc/*.o tcp_port_used
  load_from "$rt" "$tree" "$core_version"
  rocks "$rt" --tree="$tree" remove tcp-port-used >"$top/log" 2>&1 || { cat "$top/log"; exit 1; }
  [ ! -e "$tree/lib/lua/$(lv "$rt")/tcp_port_used/core.so" ] || { echo "remove left the core behind"; exit 1; }
done

# The published repository, as of this working tree: tracked and new
# files (not ignored ones), committed and tagged v$version.
echo "== luarocks pack $release (source: this working tree, tagged v$version)"
repo=$top/repo
mkdir "$repo"
git ls-files -z --cached --others --exclude-standard |
  xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
  tar -cf - --null -T - | tar -xf - -C "$repo"
git -C "$repo" init -q
git -C "$repo" add -A
git -C "$repo" -c user.name=rock-check -c user.email=rock-check@localhost commit -q -m "v$version"
git -C "$repo" tag "v$version"
mkdir "$top/pack"
(cd "$top/pack" && GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0="url.file://$repo.insteadOf" GIT_CONFIG_VALUE_0="$url" \
  luarocks pack "$OLDPWD/$release") >"$top/log" 2>&1 || { cat "$top/log"; exit 1; }
rock=$top/pack/tcp-port-used-$rockver.src.rock
[ -f "$rock" ] || { cat "$top/log"; echo "rock-check: no $rock"; exit 1; }
listing=$(unzip -Z1 "$rock")
for f in "tcp-port-used-$rockver.rockspec" tcp-port-used/csrc/core.c tcp-port-used/lua/tcp_port_used/init.lua \
         tcp-port-used/bin/tcp-port-used; do
  echo "$listing" | grep -qx "$f" || { echo "rock-check: $f missing from the source rock"; exit 1; }
done
! echo "$listing" | grep -q '\.git/' || { echo "rock-check: the source rock holds .git"; exit 1; }
echo "packed $(basename "$rock") ($(echo "$listing" | wc -l) entries)"

for rt in 5.1 5.2 5.3 5.4 jit; do
  tree=$top/fresh-$rt
  echo "== luarocks install $(basename "$rock") into a fresh tree on $rt"
  rocks "$rt" --tree="$tree" install "$rock" >"$top/log" 2>&1 || { cat "$top/log"; exit 1; }
  load_from "$rt" "$tree" "$version"
  out=$("$tree/bin/tcp-port-used" --version)
  [ "$out" = "tcp-port-used $version" ] || { echo "rock-check: the installed command said '$out'"; exit 1; }
done

# (unix stays, so that LuaRocks keeps its Unix commands; the Lua library
# is named, which LuaRocks looks for first on Windows)
cat >"$top/windows-config.lua" <<CFG
platforms = { "unix", "windows" }
variables = { LUA_LIBDIR = "/usr/lib/$(gcc -print-multiarch)", LUA_INCDIR = "/usr/include/lua5.4",
              LUALIB = "liblua5.4.so" }
CFG
if LUAROCKS_CONFIG=$top/windows-config.lua luarocks --lua-version=5.4 --tree="$top/windows" \
     install "$rock" >"$top/log" 2>&1; then
  cat "$top/log"
  echo "rock-check: the rock installed on a platform it does not support"
  exit 1
fi
grep -q "does not support .*windows" "$top/log" || { cat "$top/log"; exit 1; }
echo "== refused on Windows: $(grep -o 'This rockspec.*' "$top/log")"

mkdir -p build/rock
cp "$rock" build/rock/
echo "rock: both rockspecs lint clean; scm-1 made, loaded and removed, and the $rockver source rock packed offline and installed into a fresh tree, on every runtime (build/rock/$(basename "$rock"))"
