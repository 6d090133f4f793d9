#!/usr/bin/env bash
# Checks cccd-edge on arm64 without a Pi: builds a Debian bookworm arm64 root (Raspberry Pi OS's base) with
# debootstrap + qemu-user-static, installs the apt dependencies, the package into a venv (pyscard compiles: it has
# no arm64 wheel), runs provisioning/install.sh for real, then the unit tests under emulation.
# Slow (emulated: tens of minutes the first time; the root is kept and reused), so never part of CI.
#
# usage: sudo scripts/arm64-check.sh [--root DIR] [--fresh] [--skip-install-sh]
# needs: debootstrap qemu-user-static binfmt-support (apt), network (Debian mirror, PyPI)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=/var/tmp/cccd-edge-arm64
MIRROR=${MIRROR:-http://deb.debian.org/debian}
FRESH=0
INSTALL_SH=1
while (($#)); do
    case "$1" in
        --root) ROOT=${2:?--root needs a directory}; shift ;;
        --fresh) FRESH=1 ;;
        --skip-install-sh) INSTALL_SH=0 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "arm64-check: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
# What the Pi gets from apt (provisioning/install.sh), plus what the unit tests need from the system.
APT_DEPS=python3,python3-venv,python3-dev,gcc,swig,pkg-config,libpcsclite-dev,pcscd,libzbar0,ca-certificates
log() { printf 'arm64-check: %s\n' "$*"; }
die() { log "FAIL: $*"; echo "arm64-check: FAIL ($*)"; exit 1; }
started=$SECONDS

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and chroot need it)"
command -v debootstrap >/dev/null || die "debootstrap missing: apt-get install debootstrap"
command -v qemu-aarch64-static >/dev/null || die "qemu-aarch64-static missing: apt-get install qemu-user-static"
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
        die "cannot mount binfmt_misc (a container needs --privileged)"
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null ||
    die "qemu-aarch64 binfmt handler not enabled (apt-get install binfmt-support qemu-user-static)"
# Without the F flag the kernel looks the interpreter up inside the chroot: put it there.
interpreter=$(sed -n 's/^interpreter //p' /proc/sys/fs/binfmt_misc/qemu-aarch64)

mounted=()
cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
# The host's CA bundle goes in too: behind a TLS-inspecting proxy, pip in the root needs the proxy's CA.
HOST_CA=/usr/local/share/cccd-edge-host-ca.crt
in_root() {
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 PIP_CERT="$HOST_CA" SSL_CERT_FILE="$HOST_CA" PIP_DISABLE_PIP_VERSION_CHECK=1 "$@"
}

# --- 1. the arm64 root ------------------------------------------------------------------------------------------
if ((FRESH)) || [ ! -f "$ROOT/.cccd-edge-root-ok" ]; then
    log "debootstrap arm64 bookworm into $ROOT (first stage)"
    rm -rf "$ROOT"
    debootstrap --arch=arm64 --variant=minbase --foreign --include="$APT_DEPS" bookworm "$ROOT" "$MIRROR" \
        >"$ROOT.debootstrap.log" 2>&1 || die "debootstrap first stage, see $ROOT.debootstrap.log"
    install -D -m 0755 "$(readlink -f "$(command -v qemu-aarch64-static)")" "$ROOT$interpreter"
    log "second stage (emulated)"
    chroot "$ROOT" /debootstrap/debootstrap --second-stage >>"$ROOT.debootstrap.log" 2>&1 ||
        die "debootstrap second stage, see $ROOT.debootstrap.log"
    touch "$ROOT/.cccd-edge-root-ok"
else
    log "reusing $ROOT (--fresh to rebuild)"
fi
[ -e "$ROOT$interpreter" ] || install -D -m 0755 "$(readlink -f "$(command -v qemu-aarch64-static)")" \
    "$ROOT$interpreter"
[ "$(in_root uname -m)" = aarch64 ] || die "the root does not run as aarch64"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
# debootstrap writes no /etc/hosts: without it "localhost" does not resolve in the root.
[ -s "$ROOT/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
install -D -m 0644 "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$ROOT$HOST_CA"
for fs in proc sys dev; do
    mount --bind "/$fs" "$ROOT/$fs"
    mounted+=("$ROOT/$fs")
done

# --- 2. the source and the venv ---------------------------------------------------------------------------------
rm -rf "$ROOT/src"
mkdir -p "$ROOT/src"
tar -C "$REPO" --exclude=./.venv --exclude=./.git --exclude=__pycache__ --exclude=.mypy_cache \
    --exclude=.pytest_cache --exclude=.ruff_cache -cf - . | tar -C "$ROOT/src" -xf -
log "venv + pip install -e .[dev] (pyscard compiles under emulation)"
in_root sh -c 'python3 -m venv --system-site-packages /venv && /venv/bin/pip install -q -e "/src[dev]"' \
    >"$ROOT.pip.log" 2>&1 || die "pip install, see $ROOT.pip.log"
pi_extras=ok
in_root /venv/bin/pip install -q lgpio >>"$ROOT.pip.log" 2>&1 || pi_extras="FAILED (see $ROOT.pip.log)"
log "pi extras (lgpio): $pi_extras"

# --- 3. install.sh for real (no systemd runs in a chroot: the unit is installed, not enabled) ----------------------
install_sh=skipped
if ((INSTALL_SH)); then
    if in_root bash /src/provisioning/install.sh >"$ROOT.install.log" 2>&1 &&
        in_root /opt/cccd-edge/bin/cccd-edge --version >>"$ROOT.install.log" 2>&1 &&
        in_root /opt/cccd-edge/bin/python -m provisioning --help >>"$ROOT.install.log" 2>&1; then
        install_sh=ok
    else
        install_sh="FAILED (see $ROOT.install.log)"
    fi
    log "install.sh: $install_sh"
fi

# --- 4. unit tests ----------------------------------------------------------------------------------------------
log "pytest tests/unit -m 'not stack' (emulated)"
set +e
in_root sh -c 'cd /src && /venv/bin/python -m pytest tests/unit -q -m "not stack" -p no:cacheprovider --timeout=900' \
    >"$ROOT.pytest.log" 2>&1
tests_rc=$?
set -e
summary=$(grep -E '(passed|failed|error)' "$ROOT.pytest.log" | tail -1)
result=PASS
((tests_rc == 0)) || result=FAIL
[ "$install_sh" = ok ] || [ "$install_sh" = skipped ] || result=FAIL
echo "arm64-check: $result (unit tests: ${summary:-no summary, see $ROOT.pytest.log}; install.sh: $install_sh;" \
    "pi extras: $pi_extras; $((SECONDS - started)) s)"
[ "$result" = PASS ]
