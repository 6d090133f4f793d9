#!/usr/bin/env bash
# Installs what cccd-edge needs on Debian 12 / Raspberry Pi OS bookworm: apt packages, then a .venv with the package.
# Idempotent and quiet when everything is already there, so `make test` and `make demo` can call it every time.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(pcscd libpcsclite-dev vsmartcard-vpcd mosquitto mosquitto-clients libzbar0 gcc swig
              systemd shellcheck libseccomp2 softhsm2 postgresql chromium chromium-driver fonts-dejavu-core
              python3-venv python3-dev pkg-config)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "bootstrap: installing apt packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
    echo "bootstrap: creating .venv and installing cccd-edge[dev]"
    # --system-site-packages lets a Pi use apt's python3-picamera2 / libcamera inside the venv.
    [ -x .venv/bin/python ] || "$PYTHON" -m venv --system-site-packages .venv
    # Build-backend chatter goes to a log; it is shown only when the install fails.
    if ! { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e ".[dev]"; } >.venv/install.log 2>&1; then
        cat .venv/install.log >&2
        exit 1
    fi
    rm -f .venv/.installed-*
    touch "$stamp"
fi
