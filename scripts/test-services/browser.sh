#!/usr/bin/env bash
# browser.sh: make sure Debian's chromium is installed (the console's browser tests drive it headless
# through playwright-core with this executable; nothing downloads a browser). Prints its path.
set -euo pipefail
die() { echo "browser.sh: $*" >&2; exit 1; }
exe=$(command -v chromium || true)
if [ -z "$exe" ]; then
  [ "$(id -u)" -eq 0 ] || die "chromium is not installed; install it first: sudo apt-get install chromium"
  echo "browser.sh: installing chromium (Debian package)" >&2
  log=$(mktemp)
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2; die "apt-get install chromium failed"
  fi
  rm -f "$log"
  exe=$(command -v chromium) || die "chromium installed but not on PATH"
fi
echo "$exe"
