#!/bin/sh
# Installs the Debian packages the build, the tests, the demo and CI need,
# when any is missing. As root it runs apt-get; otherwise it prints the
# command to run and fails.
set -eu

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
[ -z "$missing" ] && exit 0

echo "deps: installing:$missing" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: not root; run: sudo apt-get update && sudo apt-get install -y$missing" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
# shellcheck disable=SC2086
apt-get install -y -q $missing >&2
