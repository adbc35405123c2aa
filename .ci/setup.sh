#!/usr/bin/env bash
# Idempotent set-up on Debian 12 (CI, Vagrant, a developer box): system
# packages, then a venv at .venv with ustack installed editable plus test extras.
# Fast when everything is already in place. Needs root only to install packages.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
# Debian packages set-up installs when missing: one per line, so adding one is
# a one-line change (tests and the README use each of them).
PACKAGES=(
    python3-venv
    curl
    netcat-openbsd
    iproute2
    iputils-ping
    procps
    util-linux
    tshark
    tcpdump
    wrk           # real HTTP clients for tools/bench_http.py
    apache2-utils
    nmap          # tests/integration/test_hardening_ipid.py (nmap -O)
)
if [[ ${1:-} == --print-packages ]]; then  # for tools/vm-test.sh's image
    printf '%s\n' "${PACKAGES[@]}"
    exit 0
fi

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
    # PYTHONWARNINGS: setuptools' build backend warns at length about every
    # editable install; pip's own errors still show.
    PYTHONWARNINGS=ignore "$VENV/bin/python" -m pip install -q -e '.[test]'
    echo "$want" >"$stamp"
fi

# `sudo ustack ...` from any directory: sudo's secure_path drops the venv, so
# put a small launcher on root's PATH that execs this checkout's venv. Only as
# root, and only replacing a launcher we wrote (never another `ustack`).
LAUNCHER=${USTACK_LAUNCHER:-/usr/local/bin/ustack}
MARK="# ustack launcher (written by .ci/setup.sh)"
target="$(pwd)/$VENV/bin/ustack"
if [[ $(id -u) == 0 && -x $target ]]; then
    want_launcher=$(printf '#!/bin/sh\n%s\nexec %q "$@"\n' "$MARK" "$target")
    if [[ ! -e $LAUNCHER ]] || { grep -qF "$MARK" "$LAUNCHER" \
            && [[ $(cat "$LAUNCHER") != "$want_launcher" ]]; }; then
        mkdir -p "$(dirname "$LAUNCHER")"
        printf '%s\n' "$want_launcher" >"$LAUNCHER.tmp" && chmod 755 "$LAUNCHER.tmp" \
            && mv "$LAUNCHER.tmp" "$LAUNCHER"
        echo "setup: installed $LAUNCHER -> $target"
    elif ! grep -qF "$MARK" "$LAUNCHER"; then
        echo "setup: warning: $LAUNCHER exists and is not ours; left alone" >&2
    fi
elif [[ ! -e $LAUNCHER ]]; then
    echo "setup: run as root to install $LAUNCHER (for \`sudo ustack up\`)" >&2
fi
