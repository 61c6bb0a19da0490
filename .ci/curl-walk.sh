#!/usr/bin/env bash
# Walks the whole flow against `tibbersync simulate` with nothing but curl:
# authorize → token → homes → devices → device detail → every history page.
# Usage: .ci/curl-walk.sh path/to/tibbersync
set -euo pipefail
bin=${1:-dist/tibbersync}
UA='curl-walk/1.0 (linux; amd64)'
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

# Port 0: the simulator binds a free port and prints it; nothing picks a
# port and hopes it stays free.
"$bin" simulate --listen 127.0.0.1:0 --seed 1 --auto-consent --page-size 24 >"$work/sim.log" 2>&1 &
pid=$!
B=""
for _ in $(seq 600); do
  B=$(sed -n 's/^tibbersync simulator listening on \(http:[^ ]*\).*/\1/p' "$work/sim.log" | head -1)
  [ -n "$B" ] && break
  kill -0 "$pid" 2>/dev/null || { echo "curl walk: the simulator exited"; cat "$work/sim.log"; exit 1; }
  sleep 0.1
done
[ -n "$B" ] || { echo "curl walk: the simulator printed no address"; cat "$work/sim.log"; exit 1; }
B=${B%/}

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

# 1. authorize (auto-consent answers with a redirect carrying the code)
redirect=$(curl -fs -o /dev/null -w '%{redirect_url}' -A "$UA" \
  "$B/connect/authorize?response_type=code&client_id=tibbersync-sim&redirect_uri=http%3A%2F%2Flocalhost%3A8765%2Fcallback&scope=openid%20email%20offline_access%20data-api-homes-read%20data-api-thermostats-read%20data-api-energy-systems-read%20data-api-vehicles-read&state=curlwalk")
code=$(sed -E 's/.*[?&]code=([^&]+).*/\1/' <<<"$redirect")
[ -n "$code" ] || { echo "curl walk: no code in $redirect"; exit 1; }
# 2. token (client secret in the form body)
tok=$(curl -fs -A "$UA" -d grant_type=authorization_code -d "code=$code" \
  -d redirect_uri=http://localhost:8765/callback -d client_id=tibbersync-sim -d client_secret=sim-secret "$B/connect/token")
at=$(json 'd["access_token"]' <<<"$tok")
auth=(-H "Authorization: Bearer $at" -A "$UA")
# 3. homes, devices, detail
homes=$(curl -fs "${auth[@]}" "$B/v1/homes")
home=$(json 'd["homes"][0]["id"]' <<<"$homes")
devices=$(curl -fs "${auth[@]}" "$B/v1/homes/$home/devices")
dev=$(json '[x["id"] for x in d["devices"] if "hour" in x["supportedHistory"]["resolutions"]][0]' <<<"$devices")
curl -fs "${auth[@]}" "$B/v1/homes/$home/devices/$dev" | json 'd["info"]["name"]' >/dev/null
# 4. history: follow next links to the end
since=$(date -u -d '-3 days' +%Y-%m-%dT%H:00:00Z)
url="$B/v1/homes/$home/devices/$dev/history?resolution=hour&since=$since"
pages=0 items=0
while [ -n "$url" ]; do
  page=$(curl -fs "${auth[@]}" "$url")
  pages=$((pages + 1)); items=$((items + $(json 'len(d["items"])' <<<"$page")))
  url=$(json 'd.get("next") or ""' <<<"$page")
  [ $pages -lt 100 ] || { echo "curl walk: too many pages"; exit 1; }
done
[ $items -ge 48 ] || { echo "curl walk: only $items history items"; exit 1; }
echo "curl walk: authorize → token → $(json 'len(d["homes"])' <<<"$homes") homes → $(json 'len(d["devices"])' <<<"$devices") devices → detail → $pages history pages, $items items: ok"
