#!/bin/sh
# Compiles the core and exec.c with musl-gcc (the C library of Alpine and
# of OpenResty's Alpine images) under the STYLE warning set and -Werror,
# for Lua 5.4 and LuaJIT, with and without -DTPU_PORTABLE; then checks
# that no glibc header took part and that every C library function the
# modules call is one musl's libc.so defines.
#
# Debian's luaconf.h includes lua5.X-deb-multiarch.h from glibc's include
# directory. musl-gcc must never see that directory (-I there would pull in
# glibc's headers), so the one header is copied to an include directory of
# our own, beside links to the kernel's linux/, asm/ and asm-generic/
# headers that listen mode's netlink code needs.
set -eu
cd "$(dirname "$0")/.."

command -v musl-gcc >/dev/null || { echo "check-musl: musl-gcc missing (apt-get install musl-tools)"; exit 1; }
multiarch=$(gcc -print-multiarch)
musl_libc=/usr/lib/$(echo "$multiarch" | sed 's/-gnu$/-musl/')/libc.so
[ -f "$musl_libc" ] || { echo "check-musl: no $musl_libc"; exit 1; }
out=build/musl
inc=$out/include
rm -rf "$out"
mkdir -p "$inc"
cp /usr/include/"$multiarch"/lua5.4-deb-multiarch.h "$inc"/
ln -s /usr/include/linux "$inc"/linux
ln -s /usr/include/"$multiarch"/asm "$inc"/asm
ln -s /usr/include/asm-generic "$inc"/asm-generic

WARN="-std=c99 -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes -Werror -fvisibility=hidden"
musl_defined=$out/musl-defined.txt
nm -D --defined-only "$musl_libc" | awk '{ print $NF }' | sort -u >"$musl_defined"

status=0
for lua in lua5.4 luajit-2.1; do
  for variant in linux portable; do
    flags="" ; [ "$variant" = portable ] && flags=-DTPU_PORTABLE
    for src in core exec; do
      so=$out/$lua-$variant-$src.so
      # shellcheck disable=SC2086
      if ! musl-gcc -O2 -fPIC $WARN $flags -I/usr/include/"$lua" -I"$inc" -shared -o "$so" csrc/"$src".c; then
        echo "check-musl: $src.c ($lua, $variant) does not build with musl"
        status=1
        continue
      fi
      # shellcheck disable=SC2086
      glibc=$(musl-gcc $flags -I/usr/include/"$lua" -I"$inc" -M csrc/"$src".c | tr ' \\' '\n\n' |
        grep "/usr/include/$multiarch/" | grep -v "/asm/" || true)
      if [ -n "$glibc" ]; then
        echo "check-musl: $src.c ($lua, $variant) included glibc headers:" $glibc
        status=1
      fi
      missing=$(nm -D --undefined-only "$so" | awk '$1 == "U" { print $2 }' | sed 's/@.*//' |
        grep -v '^lua' | sort -u | comm -23 - "$musl_defined")
      if [ -n "$missing" ]; then
        echo "check-musl: $src.c ($lua, $variant) calls what musl lacks:" $missing
        status=1
      fi
    done
  done
done
[ "$status" -eq 0 ] && echo "musl: core and exec build with -Werror for Lua 5.4 and LuaJIT, Linux and portable paths, against musl's headers and libc only"
exit "$status"
