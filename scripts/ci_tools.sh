#!/usr/bin/env bash
# Installs the tools the operations tests need, if they are missing; safe to run again.
#   prometheus       (Debian package `prometheus`) runs every Grafana panel query for real
#   systemd-analyze  (Debian package `systemd`)    checks packaging/sidekick.service
#   chromium, chromedriver (Debian packages `chromium`, `chromium-driver`) drive the web
#                    console's tests in a real headless browser over WebDriver
# Uses apt-get, through sudo only when not root. Says what it did on stderr.
set -euo pipefail

say() { printf 'ci_tools: %s\n' "$*" >&2; }

missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)

if [ ${#missing[@]} -eq 0 ]; then
  say "prometheus, systemd-analyze, chromium and chromedriver present"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  say "please install: ${missing[*]} (no apt-get here)"
  exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    say "please install as root: ${missing[*]} (not root and no sudo)"
    exit 1
  fi
  sudo="sudo"
fi

say "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# apt's chatter (debconf, invoke-rc.d) goes to a log shown only if something fails.
if ! $sudo apt-get update -qq >"$log" 2>&1; then cat "$log" >&2; say "apt-get update failed"; exit 1; fi
# --no-install-recommends keeps prometheus from pulling in node-exporter and friends.
# The Debian package starts a prometheus service where systemd runs; that does not matter here
# (tests start their own on a spare port), and in containers without systemd nothing starts.
if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Use-Pty=0 "${missing[@]}" >"$log" 2>&1; then
  cat "$log" >&2; say "apt-get install ${missing[*]} failed"; exit 1
fi

for tool in prometheus systemd-analyze chromium chromedriver; do
  command -v "$tool" >/dev/null 2>&1 || { say "$tool still missing after apt-get install"; exit 1; }
done
say "installed: $(prometheus --version 2>&1 | head -n1)"
