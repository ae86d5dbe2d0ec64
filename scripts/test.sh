#!/usr/bin/env bash
# The workspace's test command: `cargo test --workspace --release "$@"`, then a visible count of
# the tests that skipped and why. Every test that lacks a privilege (see treegen::privilege)
# prints `SKIP: <test>: <reason>` and appends a record to the skip log; cargo's harness
# captures the printed line of a passing test, so this summary is what makes a skip visible.
# Exits with cargo's status.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo" || exit 2

target=${CARGO_TARGET_DIR:-$repo/target}
mkdir -p "$target" || exit 2
export OVDIFF_SKIP_LOG=${OVDIFF_SKIP_LOG:-$target/ovdiff-skips.log}
: >"$OVDIFF_SKIP_LOG" || exit 2

cargo test --workspace --release "$@"
status=$?

# One record per skip: <test>\t<privilege>\t<reason>.
total=$(wc -l <"$OVDIFF_SKIP_LOG")
echo
if [ "$total" -eq 0 ]; then
  echo "skipped: 0"
else
  summary=$(cut -f2 "$OVDIFF_SKIP_LOG" | sort | uniq -c | sort -rn |
    awk '{ n = $1; $1 = ""; sub(/^ /, ""); printf "%s%s: %d", sep, $0, n; sep = ", " }')
  echo "skipped: $total ($summary); by reason, tests in $OVDIFF_SKIP_LOG:"
  cut -f2,3 "$OVDIFF_SKIP_LOG" | sort | uniq -c | sort -rn |
    sed -E 's/^ *([0-9]+) ([^\t]*)\t(.*)$/  \1  \2: \3/'
fi
echo "cargo test exit status: $status"
exit "$status"
