#!/usr/bin/env bash
# Fuzzes every fuzz target of the repository (R28), one at a time: Go fuzzes
# one target of one package per run. Each target runs for $FUZZTIME (default
# 10s; nightly runs set e.g. FUZZTIME=10m). Prints one plain line per target
# and a final "fuzz: N targets, P passed, F failed" line, which is also
# appended to $TIBBERSYNC_SUMMARY_FILE when set. Exits 1 if any target fails
# or a target R28 requires is missing.
#
# A failing input is written by Go to <package>/testdata/fuzz/<Target>/;
# commit it with the fix so that it stays a regression seed.
#
# Usage: .ci/fuzz.sh [TargetName ...]   (default: every target)
set -uo pipefail
cd "$(dirname "$0")/.."

fuzztime="${FUZZTIME:-10s}"

# The targets R28 asks for; the script fails if one of them disappears.
required=(
  FuzzRetryAfter FuzzDecodeHomes FuzzDecodeDevices FuzzDecodeDevice FuzzDecodeHistoryPage
  FuzzDecodeTokenResponse FuzzParseRedirect FuzzLoad FuzzBuildDSN
)

# Discover "<package dir> <target>" pairs from the test files.
mapfile -t found < <(grep -rE --include='*_test.go' -o '^func Fuzz[A-Za-z0-9_]*\(' internal cmd 2>/dev/null |
  sed -E 's#^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]*)\($#./\1 \2#' | sort -u)

if [ ${#found[@]} -eq 0 ]; then
  echo "fuzz: no fuzz targets found" >&2
  exit 1
fi

missing=()
[ $# -eq 0 ] && for r in "${required[@]}"; do
  if ! printf '%s\n' "${found[@]}" | grep -qE " ${r}\$"; then
    missing+=("$r")
  fi
done

selected=()
if [ $# -gt 0 ]; then
  for want in "$@"; do
    match=$(printf '%s\n' "${found[@]}" | grep -E " ${want}\$" || true)
    if [ -z "$match" ]; then
      echo "fuzz: no target named $want" >&2
      exit 2
    fi
    selected+=("$match")
  done
else
  selected=("${found[@]}")
fi

# An outer bound per target, in case the fuzzer hangs: the fuzz time plus
# five minutes for building and minimizing. Only for plain durations.
guard=()
if [[ "$fuzztime" =~ ^([0-9]+)([smh])$ ]] && command -v timeout >/dev/null; then
  n=${BASH_REMATCH[1]}
  case ${BASH_REMATCH[2]} in
    s) secs=$n ;;
    m) secs=$((n * 60)) ;;
    h) secs=$((n * 3600)) ;;
  esac
  guard=(timeout --kill-after=10 $((secs + 300)))
fi

log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT
start=$(date +%s)
passed=0
failed=0
for entry in "${selected[@]}"; do
  pkg=${entry% *}
  name=${entry#* }
  log="$log_dir/$name.log"
  t0=$(date +%s)
  note=""
  for attempt in 1 2; do
    "${guard[@]}" go test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "$pkg" >"$log" 2>&1
    rc=$?
    # Go 1.26's coordinator can report a bare "context deadline exceeded"
    # when -fuzztime ends while a worker is busy (golang/go#75804, fixed in
    # Go 1.27). That is no finding: no input was written and no check
    # failed. Run such a target once more; a second failure counts.
    if [ $rc -ne 0 ] && [ $attempt -eq 1 ] && grep -q 'context deadline exceeded' "$log" &&
      ! grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:' "$log"; then
      note=" (retried once after Go's fuzztime deadline race, golang/go#75804)"
      continue
    fi
    break
  done
  secs=$(($(date +%s) - t0))
  # The last progress line: "fuzz: elapsed: 10s, execs: 123 (12/sec), new interesting: 3 (total: 9)".
  stats=$(grep -E '^fuzz: elapsed:' "$log" | tail -n 1 | sed -E 's/^fuzz: elapsed: [^,]*, //; s/ \([0-9]+\/sec\)//')
  if [ $rc -eq 0 ] && grep -qE '^ok ' "$log"; then
    passed=$((passed + 1))
    echo "fuzz: $name ($pkg) ok in ${secs}s: ${stats:-no progress line}$note"
  else
    failed=$((failed + 1))
    why="exit $rc"
    [ $rc -eq 124 ] && why="timed out"
    echo "fuzz: $name ($pkg) FAILED ($why) after ${secs}s: ${stats:-no progress line}"
    sed 's/^/    /' "$log" | tail -n 40
    if crasher=$(grep -oE 'testdata/fuzz/[^ ]+' "$log" | head -n 1) && [ -n "$crasher" ]; then
      echo "    failing input: $pkg/$crasher (keep it as a seed with the fix)"
    fi
  fi
done

for r in "${missing[@]}"; do
  failed=$((failed + 1))
  echo "fuzz: $r MISSING: R28 requires this target"
done

total=$((passed + failed))
echo "fuzz: $(($(date +%s) - start))s in all, $fuzztime per target"
summary="fuzz: $total targets, $passed passed, $failed failed"
echo "$summary"
if [ -n "${TIBBERSYNC_SUMMARY_FILE:-}" ]; then
  echo "$summary" >>"$TIBBERSYNC_SUMMARY_FILE"
fi
[ $failed -eq 0 ]
