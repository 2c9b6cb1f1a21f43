#!/usr/bin/env bash
# Installs Debian's `prometheus` package (prometheus + promtool) when either binary is
# missing; quick and silent when both are there. The test suite starts its own
# Prometheus process on a free loopback port, so the system service is never started:
# when the machine has no policy-rc.d (containers usually do), one that refuses
# service starts is put in place for the duration of the install.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "prometheus/promtool missing: run 'sudo apt-get install --no-install-recommends prometheus'" >&2
    exit 1
fi

policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    added_policy=1
fi
cleanup() { if [ "$added_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o DPkg::Lock::Timeout=600 prometheus
}
echo "installing Debian's prometheus package (prometheus, promtool)..."
# A fresh machine may have no package lists yet: update once, only if needed.
if ! apt_install >/tmp/synctec-apt.log 2>&1; then
    apt-get update -q -o DPkg::Lock::Timeout=600 >>/tmp/synctec-apt.log 2>&1
    apt_install >>/tmp/synctec-apt.log 2>&1 || { tail -20 /tmp/synctec-apt.log >&2; exit 1; }
fi
command -v prometheus >/dev/null && command -v promtool >/dev/null
echo "prometheus: $(prometheus --version 2>&1 | head -1)"
