#!/bin/sh
# busted-on.sh RUNTIME [BUSTED ARGS...]: one busted run on one runtime,
# busted's output on stdout and its status as ours (scripts/test.sh runs
# many of these at once).
#   runtimes: 5.1 5.2 5.3 5.4 5.5 jit (plain builds; 5.5 from build/lua5.5,
#   which scripts/deps.sh builds), asan (ASan+UBSan core on 5.4, sanitizer
#   runtimes preloaded), valgrind (5.4 under memcheck), portable (5.4
#   against the core built with -DTPU_PORTABLE: every Linux-only path
#   compiled out).
set -u
cd "$(dirname "$0")/.." || exit 2
rt=$1
shift
# soak: probes in spec/soak_spec.lua (a million, fewer where each costs 20x)
wrap="" preload="" interp=lua5.4 build=build/5.4 soak=1000000
case $rt in
  5.5)
    # the interpreter itself, not build.sh's wrapper: the wrapper exports
    # LUA_PATH_5_5, which would override the LUA_PATH a spec gives a child
    interp=$PWD/build/lua5.5/bin/lua5.5.bin build=build/5.5 tree=$PWD/build/lua5.5
    LUA_PATH="$tree/share/lua/5.5/?.lua;$tree/share/lua/5.5/?/init.lua;/usr/share/lua/5.4/?.lua;/usr/share/lua/5.4/?/init.lua;;"
    LUA_CPATH="$tree/lib/lua/5.5/?.so;;"
    export LUA_PATH LUA_CPATH ;;
  5.*) interp=lua$rt build=build/$rt ;;
  jit) interp=luajit build=build/jit ;;
  portable) build=build/portable ;;
  asan)
    build=build/asan soak=30000
    preload="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" ;;
  valgrind)
    soak=30000
    wrap="valgrind --quiet --error-exitcode=97 --track-fds=no --leak-check=no" ;;
  *) echo "busted-on.sh: unknown runtime $rt" >&2; exit 2 ;;
esac
# shellcheck disable=SC2086
# A run that hangs (a child that never exits) is ended, and counted failed
# for want of a summary, rather than stall the whole suite.
set -- timeout -k 10 "${TPU_RUN_TIMEOUT:-900}" env ${preload:+LD_PRELOAD=$preload} \
    ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    TPU_LUA="$interp" TPU_RUNTIME="$rt" TPU_CPATH="$PWD/$build/?.so" TPU_PRELOAD="$preload" TPU_SOAK_PROBES="$soak" \
    $wrap $interp /usr/bin/busted -o plainTerminal --cpath="$build/?.so" "$@"
# In a network namespace of its own (lo up) where one can be made
# (TPU_NETNS=0: never): runs that overlap then share no port, listener or
# socket table, so a port a spec saw free stays free of the other runs.
if [ "${TPU_NETNS:-1}" = 1 ] && unshare -n true 2>/dev/null; then
  exec unshare -n sh -c 'ip link set lo up && exec "$@"' sh "$@" 2>&1
fi
exec "$@" 2>&1
