#!/usr/bin/env bash
# `sudo ./tools/up.sh [ustack up flags]`: set up (.ci/setup.sh, which also
# installs the `ustack` launcher), then run the stack: TUN device ustack0,
# kernel side 10.203.0.1/24, ustack at 10.203.0.2. To keep it off the host's
# own network: `sudo ./tools/up.sh --netns ustack-demo` (namespace created,
# then deleted at exit). After set-up, `sudo ustack up ...` does the same.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ $(id -u) != 0 ]]; then
    echo "ustack up creates a TUN device: run with sudo" >&2
    exit 1
fi
.ci/setup.sh
ip link set lo up 2>/dev/null || true
exec .venv/bin/ustack up "$@"
