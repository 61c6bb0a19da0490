#!/usr/bin/env bash
# R21: the syscall filter of the shipped unit fits the Go runtime and SQLite.
# Runs `tibbersync demo` (simulator, setup, sync and history: the real write
# path) under strace as a non-root user, expands the unit's filter
# (@system-service minus @privileged) with systemd-analyze, and fails on any
# syscall outside it.
# Usage: .ci/syscalls.sh path/to/tibbersync
set -euo pipefail
bin=$(readlink -f "${1:-dist/tibbersync}")
command -v strace >/dev/null || { echo "syscalls: strace missing"; exit 1; }
command -v systemd-analyze >/dev/null || { echo "syscalls: systemd-analyze missing"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"
cp "$bin" "$work/tibbersync"
chmod 0755 "$work/tibbersync"
mkdir -p "$work/state" && chown nobody: "$work/state" 2>/dev/null || true

run_as=()
if [ "$(id -u)" = 0 ]; then
  run_as=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
fi
(cd "$work" && HOME="$work" timeout 300 strace -f -qq -o "$work/trace" \
  "${run_as[@]}" "$work/tibbersync" demo --cycles 2 --backfill-days 2 --dir "$work/state" >"$work/demo.out" 2>&1) || {
  echo "syscalls: demo under strace failed:"; tail -20 "$work/demo.out"; exit 1; }

python3 - "$work/trace" <<'PY'
import re, subprocess, sys
out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True).stdout
groups, cur = {}, None
for line in out.splitlines():
    if line.startswith("@"):
        cur = line.split()[0]; groups[cur] = set()
    elif cur and line.startswith("    ") and not line.strip().startswith("#") and line.strip():
        groups[cur].add(line.strip())
def expand(name, seen=None):
    seen = seen or set()
    if name in seen: return set()
    seen.add(name)
    res = set()
    for m in groups.get(name, ()):
        res |= expand(m, seen) if m.startswith("@") else {m}
    return res
allowed = expand("@system-service") - expand("@privileged")
used = set()
pat = re.compile(r"^(?:\[pid\s+\d+\]\s+|\d+\s+)?([a-z0-9_]+)\(")
started = False  # count only after the setpriv wrapper exec'd tibbersync
for line in open(sys.argv[1], errors="replace"):
    if not started:
        started = 'execve("' in line and '/tibbersync"' in line and "= 0" in line and "setpriv" not in line.split("execve(")[1].split(",")[0]
        continue
    m = pat.match(line)
    if m: used.add(m.group(1))
if not started:
    print("syscalls: never saw tibbersync exec in the trace"); sys.exit(1)
bad = sorted(used - allowed)
line = f"syscalls: {len(used)} distinct syscalls used by demo as non-root, {len(bad)} outside @system-service minus @privileged"
print(line)
import os
if os.environ.get("TIBBERSYNC_SUMMARY_FILE"):
    open(os.environ["TIBBERSYNC_SUMMARY_FILE"], "a").write(line + "\n")
if bad:
    print("outside the filter:", " ".join(bad)); sys.exit(1)
PY
