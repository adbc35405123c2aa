#!/usr/bin/env bash
# Run ustack's tests inside a throwaway Debian 12 VM under qemu:
#
#   sudo tools/vm-test.sh                     # the whole suite (./tools/test.sh)
#   sudo tools/vm-test.sh --layer integration # one layer: unit, sim, integration
#   sudo tools/vm-test.sh --ci                # CI's small integration subset
#   sudo tools/vm-test.sh -- tests/unit -x    # any ./tools/test.sh arguments
#   sudo tools/vm-test.sh --fresh-venv ...    # provision from nothing inside
#   sudo tools/vm-test.sh --no-lint ...       # pytest alone (no ruff/mypy)
#
# Stages, each with a hard time limit and a clear message when it runs out:
#  1. host packages: qemu-system-x86, qemu-utils, debootstrap (apt, retried);
#  2. image: built once by tools/vm/build-image.sh into $USTACK_VM_CACHE
#     (default /var/cache/ustack-vm), rebuilt when its recipe changes (the
#     build script, .ci/setup.sh, pyproject.toml, the cache's SSH key); the
#     build runs .ci/setup.sh once at native speed, so the image has the venv;
#  3. boot: direct kernel boot of a per-run qcow2 overlay (the image stays as
#     built); KVM when a quick probe boots a kernel with it, else TCG;
#  4. copy: the checkout's files (git ls-files: tracked + untracked, not
#     ignored) into /root/ustack in the guest, over SSH;
#  5. provision: .ci/setup.sh inside the guest, as CI and Vagrant do (it finds
#     the image's venv current and only checks; --fresh-venv deletes the venv
#     first, so pip installs everything inside the guest, through the proxy);
#  6. tests: ./tools/test.sh (or the chosen layer/subset) inside the guest;
#  7. shutdown: poweroff, then the qemu process is gone on every exit path.
# Exit status: the suite's; 2 when the VM itself could not be brought up.
#
# Network: qemu user-mode networking with restrict=on (the guest reaches
# nothing outside), SSH forwarded on 127.0.0.1 only, and one extra forward to
# tools/vm/proxy.py, which lets the guest fetch only from the package
# registries this host is configured for (its Debian mirrors, PyPI).
#
# Environment: USTACK_VM_CACHE, USTACK_VM_ACCEL (auto|kvm|tcg, default auto),
# USTACK_VM_CPUS (2), USTACK_VM_MEM (2048, MiB), USTACK_VM_TEST_TIMEOUT (s),
# USTACK_VM_DEADLINE (s, whole run; default 2700 with --ci, else 9000): every
# stage's own limit is also cut to what is left of it.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

layer=all
ci=0
lint=1
fresh_venv=0
test_args=()
while (($#)); do
    case $1 in
        --layer) layer=${2:?--layer needs a name}; shift 2 ;;
        --layer=*) layer=${1#--layer=}; shift ;;
        --ci) ci=1 lint=0; shift ;;
        --no-lint) lint=0; shift ;;
        --fresh-venv) fresh_venv=1; shift ;;
        --) shift; test_args=("$@"); break ;;
        -h|--help) sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "vm-test: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case $layer in
    all) ;;
    unit|sim|integration) test_args=("tests/$layer" "${test_args[@]}") ;;
    *) echo "vm-test: --layer must be unit, sim or integration" >&2; exit 2 ;;
esac
if ((ci)); then
    # Boot, provision, `ustack up` inside the VM, curl / nc / ping against it
    # and one impairment test (loss, duplication, reordering, delay).
    test_args=(tests/integration/test_tcp_services.py tests/integration/test_http.py
        tests/integration/test_lifecycle_bulk.py
        -k "echo_with_nc or test_ping or closed_port_refuses or get_and_head_file or impaired_link[1]")
fi

cache=${USTACK_VM_CACHE:-/var/cache/ustack-vm}
accel_mode=${USTACK_VM_ACCEL:-auto}
cpus=${USTACK_VM_CPUS:-2}
mem=${USTACK_VM_MEM:-2048}
if ((ci)); then test_limit=1200 run_limit=2700; else test_limit=5400 run_limit=9000; fi
test_limit=${USTACK_VM_TEST_TIMEOUT:-$test_limit}
run_limit=${USTACK_VM_DEADLINE:-$run_limit}
guest_dir=/root/ustack
proxy_addr=10.0.2.100:3128

t0=$(date +%s)
stage_start=$t0
# limit SECONDS: the stage's own limit, cut to what is left of the whole run.
limit() {
    local left=$((t0 + run_limit - $(date +%s)))
    ((left < 1)) && left=1
    echo $(($1 < left ? $1 : left))
}
timings=()
say() { printf 'vm-test: [%s +%ss] %s\n' "$(date -u +%T)" "$(($(date +%s) - t0))" "$*"; }
die() { say "ERROR: $*" >&2; exit 2; }
stage() { stage_name=$1; stage_start=$(date +%s); say "== $1"; }
stage_done() { timings+=("$stage_name $(($(date +%s) - stage_start))s${1:+ ($1)}"); }

# ---- cleanup on every exit path -------------------------------------------
run_dir=
qemu_pid=
child_pid=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $child_pid ]]; then kill "$child_pid" 2>/dev/null; wait "$child_pid" 2>/dev/null; fi
    if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
        say "stopping qemu (pid $qemu_pid)"
        kill "$qemu_pid" 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$qemu_pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -9 "$qemu_pid" 2>/dev/null
        wait "$qemu_pid" 2>/dev/null
    fi
    if [[ -n $run_dir && -d $run_dir ]]; then
        if ((rc != 0)) && [[ -s $run_dir/serial.log ]]; then
            say "last lines of the guest console:"
            tail -n 15 "$run_dir/serial.log" | sed 's/^/    /' >&2
        fi
        rm -rf --one-file-system "$run_dir"
    fi
    if ((${#timings[@]})); then
        say "timings: $(IFS=','; echo "${timings[*]}" | sed 's/,/, /g'); total $(($(date +%s) - t0))s"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM
# Long commands run as a background child that we wait for: bash runs a trap
# only between commands, and `wait` is the one that a signal interrupts.
bg() { "$@" <&0 & child_pid=$!; wait "$child_pid"; local rc=$?; child_pid=; return "$rc"; }

[[ $(id -u) == 0 ]] || die "run as root (sudo): it installs packages and builds an image"

retry() {
    local n
    for n in 1 2 3; do
        "$@" && return 0
        say "attempt $n of '$*' failed; retrying in $((n * 15)) s"
        sleep $((n * 15))
    done
    "$@"
}

# ---- 1. host packages -----------------------------------------------------
stage host-packages
host_packages=(qemu-system-x86 qemu-utils debootstrap openssh-client e2fsprogs python3)
missing=()
for pkg in "${host_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" \
        || missing+=("$pkg")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    retry timeout 300 apt-get update -qq || die "apt-get update failed"
    retry timeout 600 apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >/dev/null || die "could not install ${missing[*]}"
fi
stage_done

# The registries the guest may reach: this host's Debian mirrors (from apt's
# own view of its sources) and PyPI (from pip's own constants).
registry_hosts() {
    apt-cache policy 2>/dev/null | awk '
        /^ *[0-9]+ (https?):\/\// { uri = $2; next }
        /release .*o=Debian/ && uri { sub(/^[a-z]+:\/\//, "", uri); sub(/\/.*/, "", uri);
                                      print uri; uri = "" }'
    local py
    for py in "$repo/.venv/bin/python" /usr/bin/python3 python3; do
        "$py" -c 'from pip._internal.models.index import PyPI
print(PyPI.netloc); print(PyPI.file_storage_domain)' 2>/dev/null && return 0
    done
    return 1
}
debian_mirror() {
    apt-cache policy 2>/dev/null | awk '
        /^ *[0-9]+ https?:\/\/.* bookworm\/main / { uri = $2; next }
        /release .*o=Debian,.*n=bookworm,/ && uri { print uri; exit }'
}

# The checkout's files: tracked and untracked, not ignored (so no .venv).
list_files() {
    if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git -C "$repo" ls-files -z --cached --others --exclude-standard \
            | while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done
    else
        find . -path ./.venv -prune -o -path ./.git -prune -o \
            \( -type f -o -type l \) -printf '%P\0'
    fi
}
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/ustack-vm.XXXXXX") || die "mktemp failed"
list_files | tar -C "$repo" --null -T - -czf "$run_dir/source.tar.gz" \
    || die "could not pack the checkout"

# ---- 2. image ---------------------------------------------------------------
stage image
mkdir -p "$cache" && chmod 700 "$cache"
exec 9>"$cache/lock"
flock -w "$(limit 2400)" 9 || die "another vm-test.sh held $cache/lock too long"
key=$cache/id_ed25519
[[ -s $key ]] || ssh-keygen -q -t ed25519 -N '' -C ustack-vm -f "$key" \
    || die "ssh-keygen failed"
# The system packages .ci/setup.sh installs go into the image, so that the
# guest's provisioning only creates the venv (setup.sh still checks them).
mapfile -t setup_packages < <(bash .ci/setup.sh --print-packages)
((${#setup_packages[@]})) || die "no packages from .ci/setup.sh --print-packages"
mirror=$(debian_mirror)
if [[ -z $mirror ]]; then  # no package lists yet (a fresh machine)
    retry timeout 300 apt-get update -qq || die "apt-get update failed"
    mirror=$(debian_mirror)
fi
[[ -n $mirror ]] || die "no Debian bookworm mirror in this host's apt sources"
recipe=$( { cat tools/vm/build-image.sh .ci/setup.sh pyproject.toml "$key.pub"
    echo "$mirror ${setup_packages[*]}"; } | sha256sum | cut -c1-16)
image=$cache/image-$recipe
if [[ -s $image/root.img && -s $image/vmlinuz && -s $image/initrd.img ]]; then
    say "cached image $image"
    stage_done cached
else
    say "building the image (debootstrap + kernel + packages; ~10 min under load)"
    build_limit=$(limit 1800)
    bg timeout -k 30 "$build_limit" nice -n 19 tools/vm/build-image.sh "$image" "$mirror" \
        "$key.pub" "$run_dir/source.tar.gz" "${setup_packages[@]}"
    rc=$?
    ((rc == 124)) && die "image build took over ${build_limit}s"
    ((rc == 0)) || die "image build failed (exit $rc)"
    # Older images, and what an interrupted build left (we hold the lock).
    for old in "$cache"/image-*; do
        [[ $old == "$image" ]] || rm -rf --one-file-system "$old"
    done
    stage_done built
fi
flock -u 9

# ---- 3. boot ---------------------------------------------------------------
qemu-img create -q -f qcow2 -b "$image/root.img" -F raw "$run_dir/disk.qcow2" \
    || die "qemu-img create failed"
cmdline="root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=-1 mitigations=off"

# KVM here may exist but run only special (PVM) guests: a normal kernel hangs.
# Probe: does a Debian kernel reach its initrd within 20 s under KVM? (TCG
# gets there in a few seconds, KVM in under one.) Cached per host kernel.
probe_kvm() {
    [[ -w /dev/kvm ]] || return 1
    local log=$run_dir/kvm-probe.log
    # (In a subshell: a qemu that aborts must not make bash report it.)
    (timeout -k 5 20 qemu-system-x86_64 -accel kvm -cpu host -m 512 -nodefaults \
        -display none -no-reboot -serial "file:$log" -kernel "$image/vmlinuz" \
        -initrd "$image/initrd.img" -append "console=ttyS0 loglevel=7 panic=-1 rdinit=/nonexistent" \
        >/dev/null 2>&1) 2>/dev/null
    grep -q "Run /nonexistent as init process\|Kernel panic" "$log" 2>/dev/null
}
case $accel_mode in
    tcg) accel=tcg ;;
    kvm) accel=kvm ;;
    auto)
        probe_file=$cache/kvm-probe-$(uname -r)-$(qemu-system-x86_64 --version | head -n1 | tr -c 'A-Za-z0-9.\n' _)
        if [[ -f $probe_file ]]; then
            accel=$(cat "$probe_file")
        else
            say "probing KVM (up to 20 s)"
            if probe_kvm; then accel=kvm; else accel=tcg; fi
            echo "$accel" >"$probe_file"
        fi ;;
    *) die "USTACK_VM_ACCEL must be auto, kvm or tcg" ;;
esac
if [[ $accel == kvm ]]; then
    accel_args=(-accel kvm -cpu host); boot_timeout=180
else
    # TCG with one host thread per vCPU; max: every feature TCG emulates.
    accel_args=(-accel tcg,thread=multi -cpu max); boot_timeout=420
fi

registry_hosts | sort -u >"$run_dir/allow.txt"
[[ -s $run_dir/allow.txt ]] || die "could not tell which package registries this host uses"
say "the guest may fetch from: $(paste -sd' ' "$run_dir/allow.txt")"
# qemu starts the proxy per connection; a copy in run_dir keeps the path plain
# (qemu's option syntax would need commas in it doubled).
cp tools/vm/proxy.py "$run_dir/proxy.py"
ssh_opts=(-i "$key" -o IdentitiesOnly=yes -o BatchMode=yes -o User=root
    -o HostKeyAlias=ustack-vm -o UserKnownHostsFile="$image/known_hosts"
    -o StrictHostKeyChecking=yes -o ConnectTimeout=10 -o LogLevel=ERROR
    -o ServerAliveInterval=15 -o ServerAliveCountMax=8)
vm() { ssh "${ssh_opts[@]}" -p "$port" 127.0.0.1 "$@"; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start_qemu() {
    port=$(free_port) || return 1
    local net="user,id=net0,restrict=on,ipv6=off"
    net+=",hostfwd=tcp:127.0.0.1:$port-10.0.2.15:22"
    net+=",guestfwd=tcp:$proxy_addr-cmd:/usr/bin/python3 $run_dir/proxy.py"
    net+=" --allow-file $run_dir/allow.txt --log $run_dir/proxy.log"
    nice -n 19 qemu-system-x86_64 "${accel_args[@]}" -smp "$cpus" -m "$mem" \
        -nodefaults -display none -no-reboot -serial "file:$run_dir/serial.log" \
        -monitor none -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
        -append "$cmdline" \
        -drive "file=$run_dir/disk.qcow2,if=virtio,format=qcow2,cache=unsafe" \
        -netdev "$net" -device virtio-net-pci,netdev=net0,romfile= \
        -device virtio-rng-pci \
        </dev/null >"$run_dir/qemu.log" 2>&1 &
    qemu_pid=$!
    sleep 1
    kill -0 "$qemu_pid" 2>/dev/null
}

stage "boot ($accel)"
started=0
for attempt in 1 2 3; do
    if start_qemu; then started=1; break; fi
    say "qemu did not start (attempt $attempt): $(tail -n 3 "$run_dir/qemu.log")"
    wait "$qemu_pid" 2>/dev/null
    qemu_pid=
done
((started)) || die "qemu would not start; see the messages above"
boot_timeout=$(limit "$boot_timeout")
deadline=$(($(date +%s) + boot_timeout))
next_note=$(($(date +%s) + 15))
until vm true 2>/dev/null; do
    kill -0 "$qemu_pid" 2>/dev/null \
        || die "qemu exited during boot: $(tail -n 3 "$run_dir/qemu.log")"
    now=$(date +%s)
    if ((now >= deadline)); then
        die "no SSH from the guest within ${boot_timeout}s ($accel)"
    fi
    if ((now >= next_note)); then
        last=$(sed 's/\x1b\[[0-9;]*[A-Za-z]//g; s/\r//g' "$run_dir/serial.log" 2>/dev/null \
            | grep -v '^\s*$' | tail -n 1 | cut -c1-100)
        say "booting... $((now - stage_start))s: ${last:-(no console output yet)}"
        next_note=$((now + 15))
    fi
    sleep 2
done
say "guest up: $(vm uname -r), SSH on 127.0.0.1:$port"
stage_done "$accel"

# ---- 4. copy ----------------------------------------------------------------
stage copy
# Everything of the image's /root/ustack goes but its venv.
bg timeout -k 10 "$(limit 300)" ssh "${ssh_opts[@]}" -p "$port" 127.0.0.1 \
    "mkdir -p $guest_dir && find $guest_dir -mindepth 1 -maxdepth 1 ! -name .venv \
     -exec rm -rf {} + && tar -C $guest_dir -xzf -" <"$run_dir/source.tar.gz" \
    || die "copying the checkout into the guest failed"
stage_done "$(du -h "$run_dir/source.tar.gz" | cut -f1) packed"

# ---- 5. provision -------------------------------------------------------------
stage provision
if ((fresh_venv)); then
    say "--fresh-venv: deleting the image's venv; pip installs it inside the guest"
    vm "rm -rf $guest_dir/.venv" || die "could not delete the guest's venv"
fi
# The host's local CAs into the guest (a TLS-inspecting egress proxy may have
# changed its CA since the image was built); rehash only when they differ.
cas=/usr/local/share/ca-certificates
tar -C "$cas" -czf "$run_dir/cas.tar.gz" . 2>/dev/null || tar -czf "$run_dir/cas.tar.gz" -T /dev/null
timeout -k 10 "$(limit 300)" ssh "${ssh_opts[@]}" -p "$port" 127.0.0.1 \
    "t=\$(mktemp -d) && tar -C \$t -xzf - && if ! diff -rq \$t $cas >/dev/null 2>&1; then
       rm -rf $cas/* && cp -a \$t/. $cas/ && update-ca-certificates >/dev/null; fi; rm -rf \$t" \
    <"$run_dir/cas.tar.gz" || die "could not copy the host's CA certificates into the guest"
provision() {
    bg timeout -k 10 "$(limit 1200)" ssh "${ssh_opts[@]}" -p "$port" 127.0.0.1 \
        "cd $guest_dir && https_proxy=http://$proxy_addr http_proxy=http://$proxy_addr \
         PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DEFAULT_TIMEOUT=60 PIP_RETRIES=10 PIP_DISABLE_PIP_VERSION_CHECK=1 \
         ./.ci/setup.sh" </dev/null
}
provisioned=0
for attempt in 1 2; do
    provision && { provisioned=1; break; }
    rc=$?
    ((rc == 124)) && say "provisioning took over 20 min (attempt $attempt)"
    say "provisioning failed (exit $rc, attempt $attempt)"
    [[ -s $run_dir/proxy.log ]] && grep -v '^ok ' "$run_dir/proxy.log" | tail -n 5 \
        | sed 's/^/    proxy: /'
done
((provisioned)) || die ".ci/setup.sh failed inside the guest"
# Compile the freshly copied sources now: under TCG, compiling them on first
# import can make `ustack up` miss the tests' 20 s readiness wait.
bg timeout -k 10 "$(limit 600)" ssh "${ssh_opts[@]}" -p "$port" 127.0.0.1 \
    "cd $guest_dir && .venv/bin/python -m compileall -q ustack tools tests" </dev/null \
    || die "compiling the sources inside the guest failed"
stage_done "$(grep -c '^ok ' "$run_dir/proxy.log" 2>/dev/null || echo 0) downloads via proxy"

# ---- 6. tests ------------------------------------------------------------------
stage tests
quoted=$(printf '%q ' "${test_args[@]}")
# The CI subset runs pytest alone: CI's run of ./tools/test.sh on the host has
# linted and type-checked the same files minutes before (mypy under TCG is slow).
# --no-lint does the same for any run (mypy alone takes ~10 min under TCG).
if ((lint)); then guest_cmd="./tools/test.sh $quoted"; else guest_cmd=".venv/bin/python -m pytest -q $quoted"; fi
# Under TCG the tests' time limits (backstops) get 3x longer (tools/netns.py).
if [[ $accel == tcg ]]; then guest_cmd="USTACK_TEST_TIME_FACTOR=3 $guest_cmd"; fi
say "inside the guest: $guest_cmd"
test_timeout=$(limit "$test_limit")
bg timeout -k 30 "$test_timeout" ssh "${ssh_opts[@]}" -p "$port" 127.0.0.1 \
    "cd $guest_dir && $guest_cmd" </dev/null
status=$?
if ((status == 124 || status == 137)); then
    say "ERROR: the tests did not finish within ${test_timeout}s"
elif ((status == 255)); then
    say "ERROR: lost the SSH connection to the guest during the tests"
fi
stage_done "exit $status"

# ---- 7. shutdown -----------------------------------------------------------------
stage shutdown
vm "systemctl poweroff" >/dev/null 2>&1 || true
for _ in $(seq 60); do
    kill -0 "$qemu_pid" 2>/dev/null || break
    sleep 1
done
if kill -0 "$qemu_pid" 2>/dev/null; then
    say "guest did not power off within 60 s; killing qemu"
else
    wait "$qemu_pid" 2>/dev/null
    qemu_pid=
fi
stage_done
if ((status == 0)); then say "PASSED inside the VM"; else say "FAILED inside the VM (exit $status)"; fi
exit "$status"
