#!/usr/bin/env bash
# Render a clipcls report.html in headless Chromium and save a PNG screenshot of it.
# Usage: scripts/screenshot_report.sh REPORT.html OUT.png [WIDTH,HEIGHT]
# Needs Debian's `chromium` (apt-get install chromium). Networking features are switched off:
# the report is self-contained, so a render that needed the network would show missing images.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 REPORT.html OUT.png [WIDTH,HEIGHT]" >&2
    exit 2
fi
report=$(realpath "$1")
out=$(realpath -m "$2")
size=${3:-1280,2400}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
    echo "error: no chromium found; install it with: apt-get install -y chromium" >&2
    exit 3
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$profile" --window-size="$size" \
    --screenshot="$out" "file://$report" >/dev/null 2>&1
test -s "$out" || { echo "error: chromium wrote no screenshot to $out" >&2; exit 1; }
echo "$out"
