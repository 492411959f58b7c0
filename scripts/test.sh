#!/bin/sh
# test.sh RUNTIME...: the busted suite on each runtime (scripts/busted-on.sh
# names them), every spec file as a busted run of its own, TPU_JOBS runs at
# a time (default 4 per core; 2 per core under valgrind) across all the
# runtimes at once. The suite mostly waits on real time (servers starting,
# timeouts running out), so the runs overlap; each has a network namespace
# of its own (busted-on.sh) and takes its files from mktemp, so they share
# no port, socket table or file. With BUSTED_ARGS (spec files or busted
# flags), one run per runtime with those arguments instead.
# Prints a line per run as it ends (and its output when a spec failed or is
# pending), then the ten slowest runs, and last one line
# "N passed, N failed[, N skipped]" summed from busted's own summaries.
# The runs start longest first, by the times of the last run (build/test-times).
set -u
cd "$(dirname "$0")/.." || exit 2

# One run: test.sh --run DIR RUNTIME FILE ("-" for BUSTED_ARGS alone);
# leaves DIR/<run>.res: "ms runtime file passed failed errors pending".
if [ "${1:-}" = --run ]; then
  dir=$2 rt=$3 file=$4
  name=$(echo "$rt $file" | tr '/ ' '__')
  shown=$file
  [ "$file" != - ] || shown=${BUSTED_ARGS:-}
  log=$dir/$name.log
  t0=$(date +%s%N)
  # shellcheck disable=SC2086
  if [ "$file" = - ]; then
    sh scripts/busted-on.sh "$rt" ${BUSTED_ARGS:-} >"$log"
  else
    sh scripts/busted-on.sh "$rt" "$file" >"$log"
  fi
  rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  line=$(grep -E '^[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$log" | tail -n 1)
  if [ -z "$line" ]; then
    s=0 f=0 e=1 p=0 why="ended (status $rc) without a summary: counted as 1 failed"
  else
    s=$(echo "$line" | sed -E 's#^([0-9]+) success.*#\1#')
    f=$(echo "$line" | sed -E 's#^[0-9]+ success(es)? / ([0-9]+) failure.*#\2#')
    e=$(echo "$line" | sed -E 's#.* / ([0-9]+) errors? / .*#\1#')
    p=$(echo "$line" | sed -E 's#.* / ([0-9]+) pending.*#\1#')
    why=""
    if [ "$rc" -ne 0 ] && [ $((f + e)) -eq 0 ]; then
      e=1 why="exited $rc with no failing spec (sanitizer or valgrind report above): counted as 1 failed"
    fi
  fi
  echo "$ms $rt $file $s $f $e $p" >"$dir/$name.res"
  # one write per run, under a lock: the runs' reports do not interleave
  {
    [ $((f + e + p)) -eq 0 ] || { echo "== busted on $rt: $shown"; cat "$log"; }
    [ -z "$why" ] || echo "test.sh: busted on $rt, $shown $why"
    printf '%-9s %-36s %4d passed, %d failed, %d pending  %6.1f s\n' "$rt" "$shown" "$s" $((f + e)) "$p" \
      "$(echo "$ms" | awk '{ print $1 / 1000 }')"
  } >"$log.report"
  flock "$dir/lock" cat "$log.report"
  exit 0
fi

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cores=$(nproc)
case " $* " in *" valgrind "*) jobs=${TPU_JOBS:-$((cores * 2))} ;; *) jobs=${TPU_JOBS:-$((cores * 4))} ;; esac
hist=build/test-times
mkdir -p build
[ -f "$hist" ] || : >"$hist"

for rt in "$@"; do
  case $rt in
    5.1|5.2|5.3|5.4|5.5|jit|portable|asan|valgrind) ;;
    *) echo "test.sh: unknown runtime $rt" >&2; exit 2 ;;
  esac
  if [ -n "${BUSTED_ARGS:-}" ]; then
    echo "$rt -"
  else
    for f in spec/*_spec.lua; do echo "$rt $f"; done
  fi
done >"$dir/runs"

# The soaks (a million probes each, busy on a core throughout) run in
# lanes of their own, one per core (TPU_SOAK_LANES): all six side by side
# slow each other and everything else down several times over. They are
# the longest path, so the other runs, which mostly wait, yield the
# processor to them (nice 5); those share the rest of the lanes,
# never-timed runs first, then the longest of the last run.
grep ' spec/soak_spec\.lua$' "$dir/runs" >"$dir/serial"
grep -v ' spec/soak_spec\.lua$' "$dir/runs" >"$dir/parallel"
start=$(date +%s%N)
xargs -r -P "${TPU_SOAK_LANES:-$cores}" -L 1 sh scripts/test.sh --run "$dir" <"$dir/serial" &
serial=$!
[ -s "$dir/serial" ] && [ "$jobs" -gt 1 ] && jobs=$((jobs - 1))
echo "== busted on $* ($(wc -l <"$dir/runs") runs: $jobs at a time, and the soaks ${TPU_SOAK_LANES:-$cores} at a time beside them)"
awk 'FILENAME == ARGV[1] { t[$2 " " $3] = $1; next } { print (($0 in t) ? t[$0] : 1e9), $0 }' "$hist" "$dir/parallel" |
  sort -rn -k1,1 | cut -d' ' -f2- |
  nice -n 5 xargs -r -P "$jobs" -L 1 sh scripts/test.sh --run "$dir"
wait "$serial"
wall=$((($(date +%s%N) - start) / 1000000))

cat "$dir"/*.res >"$dir/all" 2>/dev/null
# keep the times of runs of the whole suite, for the next run's order
[ -n "${BUSTED_ARGS:-}" ] || { awk 'FILENAME == ARGV[1] { k[$2 " " $3] = 1; print; next } !(($2 " " $3) in k)' "$dir/all" "$hist" >"$dir/hist" && cp "$dir/hist" "$hist"; }

echo "== the ten slowest runs (of $(wc -l <"$dir/all"), $(echo "$wall" | awk '{ printf "%.1f", $1 / 1000 }') s of wall time in all)"
sort -rn -k1,1 "$dir/all" | head -n 10 | awk '{ printf "%7.1f s  %-9s %s\n", $1 / 1000, $2, $3 }'

missing=$(($(wc -l <"$dir/runs") - $(wc -l <"$dir/all")))
[ "$missing" -eq 0 ] || echo "test.sh: $missing runs left no result: counted as failed"
awk -v missing="$missing" '{ s += $4; f += $5 + $6; p += $7 }
  END { f += missing
        if (p > 0) printf "%d passed, %d failed, %d skipped\n", s, f, p
        else printf "%d passed, %d failed\n", s, f
        exit f > 0 }' "$dir/all"
