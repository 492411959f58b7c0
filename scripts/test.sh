#!/bin/sh
# Runs the whole busted suite once per named runtime and prints, last, one
# line "N passed, N failed[, N skipped]" summed from busted's own summaries.
#   runtimes: 5.1 5.2 5.3 5.4 jit (plain builds), asan (ASan+UBSan core on
#   5.4, sanitizer runtimes preloaded), valgrind (5.4 under memcheck),
#   portable (5.4 against the core built with -DTPU_PORTABLE: every
#   Linux-only path compiled out).
# Extra busted arguments can be passed in BUSTED_ARGS.
set -u
cd "$(dirname "$0")/.."

passed=0 failed=0 skipped=0
for rt in "$@"; do
  # soak: probes in spec/soak_spec.lua (a million, fewer where each costs 20x)
  wrap="" preload="" interp=lua5.4 build=build/5.4 soak=1000000
  case $rt in
    5.*) interp=lua$rt build=build/$rt ;;
    jit) interp=luajit build=build/jit ;;
    portable) build=build/portable ;;
    asan)
      build=build/asan soak=30000
      preload="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" ;;
    valgrind)
      soak=30000
      wrap="valgrind --quiet --error-exitcode=97 --track-fds=no --leak-check=no" ;;
    *) echo "test.sh: unknown runtime $rt" >&2; exit 2 ;;
  esac
  echo "== busted on $rt ($interp, $build)"
  log=$(mktemp)
  # shellcheck disable=SC2086
  env ${preload:+LD_PRELOAD=$preload} \
      ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}" \
      UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
      TPU_LUA="$interp" TPU_RUNTIME="$rt" TPU_CPATH="$PWD/$build/?.so" TPU_PRELOAD="$preload" TPU_SOAK_PROBES="$soak" \
      $wrap $interp /usr/bin/busted -o plainTerminal --cpath="$build/?.so" ${BUSTED_ARGS:-} \
      >"$log" 2>&1
  rc=$?
  cat "$log"
  line=$(grep -E '^[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$log" | tail -n 1)
  rm -f "$log"
  if [ -z "$line" ]; then
    echo "test.sh: busted on $rt ended (status $rc) without a summary: counted as 1 failed"
    failed=$((failed + 1))
    continue
  fi
  s=$(echo "$line" | sed -E 's#^([0-9]+) success.*#\1#')
  f=$(echo "$line" | sed -E 's#^[0-9]+ success(es)? / ([0-9]+) failure.*#\2#')
  e=$(echo "$line" | sed -E 's#.* / ([0-9]+) errors? / .*#\1#')
  p=$(echo "$line" | sed -E 's#.* / ([0-9]+) pending.*#\1#')
  passed=$((passed + s)) failed=$((failed + f + e)) skipped=$((skipped + p))
  if [ "$rc" -ne 0 ] && [ $((f + e)) -eq 0 ]; then
    echo "test.sh: busted on $rt exited $rc with no failing spec (sanitizer or valgrind report above): counted as 1 failed"
    failed=$((failed + 1))
  fi
done

if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
