#!/bin/sh
# Installs the Debian packages the build, the tests, the demo and CI need,
# when any is missing. As root it runs apt-get; otherwise it prints the
# command to run and fails.
# Then Lua 5.5, which Debian does not package: built once into build/lua5.5
# (interpreter, headers, busted's stack) by ../shared/lua5.5/build.sh when
# that exists beside the checkout, and skipped, saying so, when it does not;
# TPU_LUA55=required (.ci/run) makes its absence or a failed build fatal.
set -eu
cd "$(dirname "$0")/.."

PACKAGES="
gcc make pkg-config
lua5.1 liblua5.1-0-dev lua5.2 liblua5.2-dev lua5.3 liblua5.3-dev lua5.4 liblua5.4-dev
luajit2 libluajit2-5.1-dev
lua-busted lua-socket lua-filesystem luarocks lua-check lua-luv
neovim nginx-light libnginx-mod-http-lua
postgresql redis-server
valgrind cppcheck clang libclang-rt-14-dev
iproute2 nftables procps strace musl-tools s6
"

missing=""
for p in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
if [ -n "$missing" ]; then
  echo "deps: installing:$missing" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: not root; run: sudo apt-get update && sudo apt-get install -y$missing" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  # shellcheck disable=SC2086
  apt-get install -y -q $missing >&2
fi

src=../shared/lua5.5 dest=build/lua5.5
if [ ! -f "$src/build.sh" ]; then
  echo "deps: skipping Lua 5.5: $src not found" >&2
  [ "${TPU_LUA55:-}" != required ] || exit 1
elif [ ! -f "$dest/.built" ] || [ -n "$(find "$src" -newer "$dest/.built" -type f)" ]; then
  echo "deps: building Lua 5.5 and busted into $dest ($src/build.sh)" >&2
  rm -rf "$dest"
  if sh "$src/build.sh" "$dest" >&2; then
    touch "$dest/.built"
  else
    rm -rf "$dest"
    echo "deps: building Lua 5.5 failed" >&2
    [ "${TPU_LUA55:-}" != required ] || exit 1
  fi
fi
