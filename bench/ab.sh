#!/bin/bash
# A/B of two Johi builds: CPU per request of NEW against OLD, both serving the benchmark's
# config *at the same time* on CPU 0 (`steady.sh` with one binary per config), compared
# window by window.
#
# On this VM the speed of user-space code moves by ±30 % within minutes (bench/README.md,
# 2026-12-08), so two builds measured one after the other cannot be compared to a few
# per cent; loaded together they see the same machine. callgrind (bench/callgrind.py) is
# exact but blind to what copying and cold allocations cost; this is the time it misses.
#
#   cp target/release/johi /tmp/johi.old        # before the change
#   cargo build --release -p johi               # after it
#   bench/ab.sh /tmp/johi.old target/release/johi
#   bench/ab.sh target/release/johi /tmp/johi.old   # the slots swapped: expect ~1/ratio
#   bench/ab.sh /tmp/johi.old /tmp/johi.old         # A/A: expect ~1.00
#
# The last line, "median ratio of config 2 to the first", is NEW's CPU per request ÷ OLD's.
# Environment: as `steady.sh` (WINDOWS, SECONDS_PER_WINDOW, STREAM=1), CONNECTIONS defaults
# to 32 per build. Uses ports 18001 (the mock, from NEW), 18080 (OLD) and 18082 (NEW).
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 OLD_JOHI_BINARY NEW_JOHI_BINARY" >&2
  exit 2
fi
OLD=$(realpath "$1")
NEW=$(realpath "$2")
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# The benchmark's config twice, each build on its own port with its own audit file.
sed -e 's|results/audit.jsonl|audit-old.jsonl|' "$HERE/johi.yaml" >"$TMP/old.yaml"
sed -e 's|18080|18082|' -e 's|results/audit.jsonl|audit-new.jsonl|' "$HERE/johi.yaml" \
  >"$TMP/new.yaml"
JOHI_BIN=$NEW JOHI_BINS="$OLD $NEW" CONNECTIONS=${CONNECTIONS:-32} \
  "$HERE/steady.sh" "$TMP/old.yaml" 18080 "$TMP/new.yaml" 18082
