#!/usr/bin/env bash
# The README's two set-up commands: `scripts/make.sh demo` (the main job) and `scripts/make.sh test` (the tests).
# A minimal Debian 12 has no make (it is not part of a standard install), and the Makefile cannot install it: this
# does, then runs the Makefile's target, whose scripts/bootstrap.sh installs everything else.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v make >/dev/null 2>&1; then
    echo "make.sh: installing make"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends make >/dev/null
fi
exec make "$@"
