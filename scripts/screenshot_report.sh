#!/usr/bin/env bash
# Render a refresh monitoring report (report.html) in headless Chromium and save a PNG screenshot.
# Usage: scripts/screenshot_report.sh REPORT_HTML [OUT_PNG]
# Needs Debian's chromium (apt-get install -y chromium). Exits non-zero when chromium is missing or the page
# logs a console error; no network is used (the report is self-contained).
set -euo pipefail
html="${1:?usage: $0 REPORT_HTML [OUT_PNG]}"
out="${2:-${html%.html}.png}"
bin="$(command -v chromium || command -v chromium-browser || true)"
[ -n "$bin" ] || { echo "chromium not found (apt-get install -y chromium)" >&2; exit 2; }
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
url="file://$(readlink -f "$html")"
flags=(--headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update
       --no-first-run --user-data-dir="$profile" --enable-logging=stderr --v=0 --hide-scrollbars)
log="$profile/console.log"
timeout 90 "$bin" "${flags[@]}" --window-size=1280,2400 --screenshot="$(readlink -f "$(dirname "$out")")/$(basename "$out")" "$url" 2>"$log" || {
  echo "chromium failed:" >&2; tail -20 "$log" >&2; exit 1; }
# Page errors (bad markup does not raise, but script errors and failed loads do) show up as CONSOLE lines.
if grep -E "CONSOLE.*(Uncaught|Error)|Failed to load|net::ERR" "$log" >/dev/null; then
  echo "page errors:" >&2; grep -E "CONSOLE|Failed to load|net::ERR" "$log" >&2; exit 1
fi
# The DOM as rendered: proves the page parsed and every chart became an element.
timeout 90 "$bin" "${flags[@]}" --dump-dom "$url" 2>>"$log" > "$profile/dom.html"
svgs=$(grep -o "<svg" "$profile/dom.html" | wc -l)
echo "rendered $html: $svgs inline SVG chart(s); screenshot $out ($(stat -c %s "$out") bytes)"
