#!/usr/bin/env bash
# Idempotent set-up on Debian 12 (CI, Vagrant, a developer box): system
# packages, then a venv at .venv with ustack installed editable plus test extras.
# Fast when everything is already in place. Needs root only to install packages.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
PACKAGES=(python3-venv curl netcat-openbsd iproute2 iputils-ping procps util-linux tshark nmap)

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" \
        || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) != 0 ]]; then
        echo "setup: missing packages ${missing[*]}: run as root (sudo)" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # tshark: do not ask whether non-root users may capture (keep it root-only).
    echo "wireshark-common wireshark-common/install-setuid boolean false" \
        | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -c /dev/net/tun ]]; then
    modprobe tun 2>/dev/null || echo "setup: warning: /dev/net/tun missing" \
        "(modprobe tun failed; in a container pass --device /dev/net/tun)" >&2
fi

# Reinstall only when pyproject.toml changed since the last successful install.
stamp="$VENV/.ustack-setup-stamp"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -x $VENV/bin/python ]] || [[ $(cat "$stamp" 2>/dev/null) != "$want" ]]; then
    "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
        || { echo "setup: ustack needs Python >= 3.11" >&2; exit 1; }
    [[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[test]'
    echo "$want" >"$stamp"
fi
