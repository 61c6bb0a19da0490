#!/usr/bin/env bash
# R17/R22: an analyst, a second Unix user in the daemon's group, reads
# data.db read-only while the daemon writes, and cannot read secrets/.
# Runs as root (CI); the daemon runs as nobody:nogroup with UMask 0027 like
# the systemd unit. Usage: .ci/analyst-read.sh path/to/tibbersync
set -euo pipefail
bin=$(readlink -f "${1:-dist/tibbersync}")
if [ "$(id -u)" != 0 ]; then echo "analyst read: skipped (needs root to create users)"; exit 0; fi
command -v sqlite3 >/dev/null || { echo "analyst read: sqlite3 missing"; exit 1; }
id tsanalyst >/dev/null 2>&1 || useradd --system --no-create-home --gid nogroup --shell /usr/sbin/nologin tsanalyst
work=$(mktemp -d)
chmod 0755 "$work"
cp "$bin" "$work/tibbersync"; chmod 0755 "$work/tibbersync"
mkdir "$work/state"; chown nobody:nogroup "$work/state"; chmod 0750 "$work/state"
setpriv --reuid=nobody --regid=nogroup --clear-groups -- sh -c \
  "umask 0027; exec '$work/tibbersync' demo --serve --dir '$work/state' --listen 127.0.0.1:0" >"$work/daemon.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

as_analyst() { setpriv --reuid=tsanalyst --regid=nogroup --init-groups -- "$@"; }
db="file:$work/state/data.db?mode=ro"
ok=0
for _ in $(seq 100); do
  n=$(as_analyst sqlite3 "$db" 'SELECT COUNT(*) FROM device_history' 2>/dev/null || echo 0)
  [ "${n:-0}" -gt 0 ] && break
  sleep 0.2
done
[ "${n:-0}" -gt 0 ] || { echo "analyst read: daemon stored nothing readable"; tail -20 "$work/daemon.log"; exit 1; }
# 30 reads spread over the daemon's writes.
reads=0 fails=0
for _ in $(seq 30); do
  if as_analyst sqlite3 "$db" 'SELECT COUNT(*) FROM devices; SELECT COUNT(*) FROM latest_capabilities; SELECT COUNT(*) FROM history_hourly;' >/dev/null 2>"$work/err"; then
    reads=$((reads + 1))
  else
    fails=$((fails + 1)); cat "$work/err"
  fi
  sleep 0.1
done
mode_db=$(stat -c %a "$work/state/data.db")
mode_secrets=$(stat -c %a "$work/state/secrets")
if as_analyst ls "$work/state/secrets" >/dev/null 2>&1; then
  echo "analyst read: the analyst can list secrets/ (mode $mode_secrets)"; exit 1
fi
# `tibbersync status` run by the analyst: the state directory is not
# writable for this user by design (0750), which is not a storage problem;
# the write probe is left to the service user and said so.
st_rc=0
st_json=$(TIBBERSYNC_STORAGE_DIR="$work/state" as_analyst "$work/tibbersync" status --json 2>"$work/status.err") || st_rc=$?
storage=$(python3 -c 'import json,sys; d=json.load(sys.stdin); c=[c for c in d["checks"] if c["name"]=="storage"][0]; print(("ok" if c["ok"] else "FAIL")+": "+c["detail"])' <<<"$st_json") || {
  echo "analyst read: status --json as the analyst (exit $st_rc) is not a report:"; echo "$st_json"; cat "$work/status.err"; exit 1; }
case "$storage" in
  "ok: "*"write probe skipped"*) ;;
  *) echo "analyst read: status as the analyst reports storage \"$storage\" (exit $st_rc)"; exit 1 ;;
esac
[ "$st_rc" != 1 ] || { echo "analyst read: status as the analyst exits 1 (unreadable/storage error): $storage"; exit 1; }

line="analyst read: $reads/30 read-only reads by a second user in the group while the daemon wrote, $fails errors; status as the analyst: storage $storage (exit $st_rc); data.db $mode_db, secrets/ $mode_secrets (analyst denied)"
echo "$line"
[ -n "${TIBBERSYNC_SUMMARY_FILE:-}" ] && echo "$line" >>"$TIBBERSYNC_SUMMARY_FILE"
[ "$fails" = 0 ]
