#!/bin/sh
# Debian's Chromium for scripts/render_reports.py (headless screenshots of the HTML reports).
set -e
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
chromium --version
