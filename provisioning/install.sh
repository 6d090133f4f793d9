#!/usr/bin/env bash
# Installs cccd-edge on Raspberry Pi OS bookworm (also Debian 12, for testing): apt packages, the cccd-edge system
# user, the pcscd polkit rule, a venv in /opt/cccd-edge, state and config directories, the systemd unit.
# Idempotent: a re-run changes only what is missing or outdated. Provisioning (keys, certificates, config.toml) is
# a separate step: see provisioning/README.md.
#
# usage: sudo provisioning/install.sh [--dry-run] [--no-apt] [--pkcs11] [--prefix DIR]
#   --dry-run  print what would be done, change nothing (does not need root)
#   --no-apt   skip apt (offline re-install of a new package version)
#   --pkcs11   also install python-pkcs11, for a device key inside a secure element or TPM
#   --prefix   venv location (default /opt/cccd-edge; the unit's ExecStart expects the default)
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=/opt/cccd-edge
DRY_RUN=0
USE_APT=1
EXTRAS=pi
USER_NAME=cccd-edge
STATE_DIR=/var/lib/cccd-edge
CONFIG_DIR=/etc/cccd-edge
UNIT_DIR=/etc/systemd/system

while (($#)); do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --no-apt) USE_APT=0 ;;
        --pkcs11) EXTRAS=pi,pkcs11 ;;
        --prefix) PREFIX=${2:?--prefix needs a directory}; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# The venv, the unit and the docs must be world-readable whatever root's umask is; secrets get explicit modes.
umask 022
say() { printf 'install: %s\n' "$*"; }
# Every change goes through run: in a dry run it is printed instead of done.
run() {
    if ((DRY_RUN)); then
        printf '+ %s\n' "$*"
    else
        "$@"
    fi
}

if ((!DRY_RUN)) && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo), or with --dry-run to see the plan" >&2
    exit 1
fi

# --- 1. apt packages --------------------------------------------------------------------------------------------
# shellcheck source=/dev/null
codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-unknown}")
[ "$codename" = bookworm ] || say "warning: tested on bookworm, this is '$codename'"
# pyscard has no arm64 wheel: it compiles against libpcsclite-dev with gcc + swig on the Pi.
APT_PACKAGES=(pcscd libpcsclite-dev libzbar0 gcc swig pkg-config python3-venv python3-dev)
# picamera2 comes from Raspberry Pi OS's archive only (it needs the system libcamera bindings).
if apt-cache show python3-picamera2 >/dev/null 2>&1; then
    APT_PACKAGES+=(python3-picamera2)
else
    say "python3-picamera2 not in the apt sources (not Raspberry Pi OS): camera source 'picam' unavailable"
fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if ((USE_APT)); then
        run apt-get update -qq
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        say "warning: --no-apt, but missing: ${missing[*]}"
    fi
else
    say "apt packages present"
fi

# --- 2. the service user ----------------------------------------------------------------------------------------
run install -D -m 0644 "$SRC/systemd/cccd-edge.sysusers.conf" /usr/lib/sysusers.d/cccd-edge.conf
run install -D -m 0644 "$SRC/systemd/cccd-edge.tmpfiles.conf" /usr/lib/tmpfiles.d/cccd-edge.conf
if command -v systemd-sysusers >/dev/null; then
    run systemd-sysusers cccd-edge.conf
else  # containers without systemd: the same result by hand
    getent group gpio >/dev/null || run groupadd --system gpio
    getent passwd "$USER_NAME" >/dev/null || run useradd --system --user-group --home-dir "$STATE_DIR" \
        --no-create-home --shell /usr/sbin/nologin --comment "cccd-edge CCCD reader terminal" "$USER_NAME"
    run usermod --append --groups gpio,video "$USER_NAME"
fi
# Some distributions give pcscd's socket to a "pcscd" group; Debian's is world-connectable (polkit decides).
if getent group pcscd >/dev/null; then
    run usermod --append --groups pcscd "$USER_NAME"
fi

# --- 3. polkit rule for pcscd -----------------------------------------------------------------------------------
if [ -d /usr/share/polkit-1 ] || [ -d /etc/polkit-1 ]; then
    run install -D -m 0644 "$SRC/provisioning/polkit/50-cccd-edge-pcscd.rules" \
        /etc/polkit-1/rules.d/50-cccd-edge-pcscd.rules
else
    say "polkit not installed: pcscd does not consult it, no rule needed"
fi

# --- 4. the venv and the package --------------------------------------------------------------------------------
# --system-site-packages: picamera2 and libcamera come from apt, not from PyPI, so the venv must be built on the
# system interpreter apt installs them for, not on whatever `python3` is first on root's PATH (a pyenv or conda
# python under /root would also leave the venv unreadable for the service user).
SYSTEM_PYTHON=/usr/bin/python3
if [ -x "$PREFIX/bin/python" ] && [ "$(readlink -f "$PREFIX/bin/python")" != "$(readlink -f "$SYSTEM_PYTHON")" ]; then
    say "venv in $PREFIX is built on $(readlink -f "$PREFIX/bin/python"), not $SYSTEM_PYTHON: rebuilding it"
    run rm -rf "$PREFIX"
fi
if [ ! -x "$PREFIX/bin/python" ]; then
    run "$SYSTEM_PYTHON" -m venv --system-site-packages "$PREFIX"
fi
# The stamp covers the extras too: `--pkcs11` after a plain install must still run pip for python-pkcs11.
stamp="$PREFIX/.installed-$( { echo "extras=$EXTRAS"; cd "$SRC" && find pyproject.toml edge provisioning -type f \
    -not -name '*.pyc' -print0 | sort -z | xargs -0 sha1sum; } | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    run "$PREFIX/bin/pip" install --quiet --disable-pip-version-check "${SRC}[${EXTRAS}]"
    # provisioning/ is not part of the wheel: ship it beside the package so `python -m provisioning` works here.
    if [ -x "$PREFIX/bin/python" ]; then
        site=$("$PREFIX/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    else
        site="$PREFIX/lib/python3.X/site-packages"  # dry run before the venv exists
    fi
    run rm -rf "$site/provisioning"
    run sh -c "tar -C '$SRC' --exclude=__pycache__ -cf - provisioning | tar -C '$site' -xf -"
    run install -D -m 0644 "$SRC/provisioning/README.md" "$PREFIX/share/doc/provisioning/README.md"
    run sh -c "rm -f '$PREFIX'/.installed-* && touch '$stamp'"
else
    say "package in $PREFIX is up to date"
fi
run ln -sfn "$PREFIX/bin/cccd-edge" /usr/local/bin/cccd-edge

# --- 5. state and config directories ----------------------------------------------------------------------------
run install -d -m 0700 -o "$USER_NAME" -g "$USER_NAME" "$STATE_DIR"
run install -d -m 0750 -o root -g "$USER_NAME" "$CONFIG_DIR" "$CONFIG_DIR/trust"

# The service user must be able to run what was installed (a venv on an unreadable interpreter, or a umask that
# made files root-only, would otherwise show up only as "Permission denied" when the unit starts).
if ((!DRY_RUN)) && ! (cd / && runuser -u "$USER_NAME" -- "$PREFIX/bin/python" -c 'import edge.cli, provisioning'); then
    echo "install.sh: $USER_NAME cannot run $PREFIX/bin/python with the package (see the error above)" >&2
    exit 1
fi

# --- 6. the unit ------------------------------------------------------------------------------------------------
run install -D -m 0644 "$SRC/systemd/cccd-edge.service" "$UNIT_DIR/cccd-edge.service"
if [ -d /run/systemd/system ]; then
    run systemctl daemon-reload
    run systemctl enable pcscd.socket cccd-edge.service
    if [ -f "$CONFIG_DIR/config.toml" ]; then
        run systemctl restart cccd-edge.service
    else
        say "not started: provision first (python -m provisioning device init ...), then systemctl start cccd-edge"
    fi
else
    say "systemd is not running here: unit installed, not enabled"
fi
if ((DRY_RUN)); then say "dry run: nothing changed"; else say "done; next: provisioning/README.md"; fi
