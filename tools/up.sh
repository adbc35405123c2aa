#!/usr/bin/env bash
# Quick start: `sudo ./tools/up.sh [ustack up flags]`. Sets up, then runs the
# stack: TUN device ustack0, kernel side 10.203.0.1/24, ustack at 10.203.0.2.
# To keep it off the host's own network, run it in a namespace:
#   sudo ip netns add ustack-demo && sudo ip netns exec ustack-demo ./tools/up.sh
# or `sudo python3 tools/netns.py -- ./tools/up.sh` (namespace deleted on exit).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ $(id -u) != 0 ]]; then
    echo "ustack up creates a TUN device: run with sudo" >&2
    exit 1
fi
.ci/setup.sh
ip link set lo up 2>/dev/null || true
exec .venv/bin/ustack up "$@"
