#!/bin/sh
# Headless Chromium for the report test (tests/test_cli_report.py). Installs the Debian packages only when
# /usr/bin/chromium is missing, so calling it before every test run costs nothing once they are there.
set -eu
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure_chromium: /usr/bin/chromium is missing; run as root: apt-get install chromium chromium-driver" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends chromium chromium-driver
