#!/usr/bin/env bash
# Issue 7's "done when", repeatable: on a clean Debian 12 / Raspberry Pi OS machine, provisioning/install.sh plus
# provisioning against a local ward CA yields a running daemon that delivers a verified result to a TLS broker.
#
# As root it:
#   1. runs provisioning/install.sh (the real install: /opt/cccd-edge, user cccd-edge, /etc/cccd-edge, /var/lib/...);
#   2. plays the ward in a temporary directory and provisions the terminal exactly as provisioning/README.md says:
#      ward-ca init + command-key, device init, ward-ca sign, device install (--trust = the simulator's test CSCA);
#   3. starts a mutual-TLS mosquitto whose client CA is the ward CA, the system pcscd with the vpcd reader (unless
#      one runs), and adds a replay camera showing the QR of the `default` profile to config.toml, as an operator;
#   4. starts the daemon by hand as the service user (no systemd needed), taps the virtual card, and runs the
#      reference receiver until it stored one result; PASS when that result's verdict is `verified`.
# Everything it started is stopped on exit (trap); the installation and provisioning stay in place, and a re-run
# keeps the device key and rewrites certificate and config (idempotent provisioning).
#
# It re-provisions this machine as terminal "install-check-01" of a throw-away ward: on a terminal already
# provisioned as another one it refuses unless --force (its certificate and config.toml would be replaced).
#
# usage: sudo scripts/install-check.sh [--no-apt] [--keep] [--profile NAME] [--force]
#   --no-apt  pass --no-apt to install.sh and install no test tools (mosquitto, vsmartcard-vpcd) either
#   --keep    keep the temporary directory (ward CA, broker PKI, logs, receiver database)
#   --profile virtual card profile (default: default); e.g. forged-dg13 must end in FAIL
#   --force   re-provision even if config.toml names another terminal
# Exit 0 only on PASS.
# SC2317: cleanup runs from the trap and the wait_for predicates through "$@"; shellcheck cannot see those calls.
# shellcheck disable=SC2317
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=/opt/cccd-edge
PY=$PREFIX/bin/python
CLI=$PREFIX/bin/cccd-edge
SERVICE_USER=cccd-edge
CONFIG_DIR=/etc/cccd-edge
CONFIG=$CONFIG_DIR/config.toml
STATE_DIR=/var/lib/cccd-edge
REPLAY_DIR=$CONFIG_DIR/replay
TERMINAL_ID=install-check-01
WARD=26734
PROFILE=default
VPCD_PORT=35963           # /etc/reader.conf.d/vpcd of Debian's vsmartcard-vpcd (0x8C7B)
READY_TIMEOUT=60          # daemon: config, pcscd, camera and broker are all local
RESULT_TIMEOUT=90         # tap -> stored at the office; the daemon's own read + verify timeouts are 20 + 10 s

USE_APT=1
KEEP=0
FORCE=0
while (($#)); do
    case "$1" in
        --no-apt) USE_APT=0 ;;
        --keep) KEEP=1 ;;
        --force) FORCE=1 ;;
        --profile) PROFILE=${2:?--profile needs a name}; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "install-check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$(id -u)" -ne 0 ]; then
    echo "install-check.sh: run as root (it installs into /opt, /etc and /var/lib)" >&2
    exit 1
fi

if ((!FORCE)) && [ -f "$CONFIG" ] && ! grep -qx "terminal_id = \"$TERMINAL_ID\"" "$CONFIG"; then
    echo "install-check.sh: $CONFIG belongs to another terminal ($(grep -m1 '^terminal_id' "$CONFIG" || true));" \
        "this check would replace its certificate and config: use --force on a machine meant for testing" >&2
    exit 1
fi

STARTED=$(date +%s)
say() { printf 'install-check: %s\n' "$*"; }
WORK=$(mktemp -d /tmp/cccd-edge-install-check.XXXXXX)
chmod 0700 "$WORK"

# --- cleanup: stop what this script started, newest first, by process group --------------------------------------
PIDS=()       # each started with setsid, so pid = process group id (runuser + daemon, for instance)
NAMES=()
start_bg() {  # start_bg NAME LOGFILE CMD...: background, own session, stdin closed
    local name=$1 logfile=$2
    shift 2
    setsid "$@" </dev/null >"$logfile" 2>&1 &
    PIDS+=("$!")
    NAMES+=("$name")
}
alive() { kill -0 "$1" 2>/dev/null; }
children() { cat "/proc/$1/task/$1/children" 2>/dev/null || true; }
stop_group() {  # stop_group PID NAME: SIGTERM, SIGKILL to the whole group after 20 s
    local pid=$1 name=$2 i targets
    alive "$pid" || return 0
    # runuser forwards a SIGTERM to the daemon but SIGKILLs it 2 s later: signal the daemon itself and let runuser
    # exit with it. Processes without children get the signal directly.
    targets=$(children "$pid")
    # shellcheck disable=SC2086  # word splitting wanted: a list of pids
    kill -TERM ${targets:-$pid} 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        say "$name (pid $pid) ignored SIGTERM for 20 s: killing its process group"
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local code=$? i
    trap - EXIT INT TERM
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_group "${PIDS[i]}" "${NAMES[i]}"
    done
    if ((${#NAMES[@]})); then
        say "stopped: ${NAMES[*]}"
    fi
    if ((KEEP)); then
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    [ -x "$CLI" ] && say "left in place: $PREFIX, $CONFIG_DIR (certificate, config.toml with [camera] replay), $STATE_DIR (device key)"
    exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    say "$*"
    echo "install-check: FAIL" >&2
    exit 1
}
show_log() {  # show_log NAME FILE: last lines of a log, for a failure report
    if [ -s "$2" ]; then
        echo "--- last lines of $1 ($2) ---" >&2
        tail -n 30 "$2" >&2
        echo "---" >&2
    fi
}
# Whether a TCP port listens on this host (from /proc: connecting to vpcd would already insert a card).
listening() {
    local hex
    hex=$(printf ':%04X' "$1")
    awk -v p="$hex" 'NR > 1 && substr($2, length($2) - 4) == p && $4 == "0A" { found = 1 } END { exit !found }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
wait_for() {  # wait_for SECONDS PID_OR_EMPTY CMD...: poll CMD every 0.2 s; fails early if PID died
    local deadline=$(($(date +%s) + $1)) pid=$2
    shift 2
    until "$@"; do
        if [ -n "$pid" ] && ! alive "$pid"; then
            return 2
        fi
        (($(date +%s) < deadline)) || return 1
        sleep 0.2
    done
}

# --- 1. install -------------------------------------------------------------------------------------------------
say "1/4 provisioning/install.sh"
install_args=()
((USE_APT)) || install_args+=(--no-apt)
"$SRC/provisioning/install.sh" "${install_args[@]}" | sed 's/^/    /'
[ -x "$CLI" ] || fail "install.sh finished but $CLI is missing"
getent passwd "$SERVICE_USER" >/dev/null || fail "install.sh finished but user $SERVICE_USER is missing"
# The check's own tools: a broker and the virtual reader driver (not part of the product's install).
tools=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || tools+=(mosquitto)
[ -f /usr/lib/pcsc/drivers/serial/libifdvpcd.so ] || tools+=(vsmartcard-vpcd)
if ((${#tools[@]})); then
    ((USE_APT)) || fail "missing ${tools[*]} and --no-apt given"
    say "installing the check's tools: ${tools[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${tools[@]}" >/dev/null
fi

# --- 2. the ward and the terminal's identity ----------------------------------------------------------------------
say "2/4 provisioning against a local ward CA (in $WORK)"
WARD_DIR=$WORK/ward
mkdir -p "$WARD_DIR"
(
    cd "$WARD_DIR"
    "$PY" -m provisioning ward-ca init --dir ward-ca --ward "$WARD"
    "$PY" -m provisioning ward-ca command-key --dir ward-ca
) | sed 's/^/    ward: /'
# The simulator's test PKI lives in root's cache (~/.cache/cccd-edge/sim-pki, kept across runs so the trust store
# does not grow): the card below runs as root too, so its chip is signed under the CSCA given to --trust.
# The ward's broker: its PKI (server CA, office client certificate) and a config on a free port whose client CAs
# are the broker CA and the ward CA. mosquitto itself starts in step 3, once the terminal is provisioned.
"$PY" - "$WORK" <<'EOF' >"$WORK/ward.env"
import sys
from pathlib import Path

from edge.sim.broker import MosquittoBroker, make_pki
from edge.sim.pki import csca_certificate_path

work = Path(sys.argv[1])
ward = work / "ward"
pki = make_pki(work / "broker" / "pki", client_cn="office")
broker = MosquittoBroker(work / "broker", pki=pki, client_cas=[ward / "ward-ca" / "ward-ca.crt"])
print(f"BROKER_PORT={broker.port}")
print(f"BROKER_CONF={broker.config}")
print(f"BROKER_CA={pki.ca_cert}")
print(f"OFFICE_CERT={pki.client_cert}")
print(f"OFFICE_KEY={pki.client_key}")
print(f"CSCA={csca_certificate_path()}")
EOF
# shellcheck source=/dev/null
. "$WORK/ward.env"
"$PY" -m provisioning device init --terminal-id "$TERMINAL_ID" --ward "$WARD" | sed 's/^/    terminal: /'
cp "$STATE_DIR/device.csr" "$WARD_DIR/device.csr"  # the USB stick
(
    cd "$WARD_DIR"
    "$PY" -m provisioning ward-ca sign device.csr --dir ward-ca --days 365 --out "$TERMINAL_ID.crt"
) | sed 's/^/    ward: /'
"$PY" -m provisioning device install \
    --cert "$WARD_DIR/$TERMINAL_ID.crt" --broker-ca "$BROKER_CA" --ward-command-key "$WARD_DIR/ward-ca/ward-command.pub" \
    --trust "$CSCA" --mqtt-host 127.0.0.1 --mqtt-port "$BROKER_PORT" | sed 's/^/    terminal: /'
DEVICE_CERT=$CONFIG_DIR/device.crt

# --- 3. broker, pcscd, camera -------------------------------------------------------------------------------------
say "3/4 mutual-TLS mosquitto on 127.0.0.1:$BROKER_PORT, pcscd + vpcd, replay camera"
start_bg mosquitto "$WORK/broker/mosquitto.log" mosquitto -c "$BROKER_CONF"
MOSQUITTO_PID=${PIDS[-1]}
wait_for 10 "$MOSQUITTO_PID" listening "$BROKER_PORT" || {
    show_log mosquitto "$WORK/broker/mosquitto.log"
    fail "mosquitto did not listen on $BROKER_PORT"
}

pcscd_runs() { [ -S /run/pcscd/pcscd.comm ] && [ -f /run/pcscd/pcscd.pid ] && alive "$(cat /run/pcscd/pcscd.pid)"; }
if pcscd_runs; then
    say "system pcscd already runs (pid $(cat /run/pcscd/pcscd.pid)): using it"
    PCSCD_KIND="system (already running)"
else
    [ -f /etc/reader.conf.d/vpcd ] || fail "/etc/reader.conf.d/vpcd missing (apt install vsmartcard-vpcd)"
    listening "$VPCD_PORT" && fail "port $VPCD_PORT is taken, but no system pcscd runs: who holds it?"
    start_bg pcscd "$WORK/pcscd.log" pcscd --foreground
    PCSCD_KIND="system (started by this check)"
fi
wait_for 10 "" listening "$VPCD_PORT" || {
    show_log pcscd "$WORK/pcscd.log"
    fail "no vpcd reader listens on $VPCD_PORT (is /etc/reader.conf.d/vpcd loaded by the running pcscd?)"
}

# The QR an operator's camera would see: the `default` profile's card, as a replayed frame the service can read.
install -d -m 0750 -o root -g "$SERVICE_USER" "$REPLAY_DIR"
"$PY" - "$WORK/qr.png" "$PROFILE" <<'EOF'
import sys
from pathlib import Path

from edge.sim.card_qr import card_qr_text, write_qr_frame
from edge.sim.profile import load_profile

write_qr_frame(card_qr_text(load_profile(sys.argv[2]).qr_person), Path(sys.argv[1]))
EOF
install -m 0640 -o root -g "$SERVICE_USER" "$WORK/qr.png" "$REPLAY_DIR/qr.png"
# The operator's edit: a [camera] section in config.toml (replaced on a re-run; provisioning keeps it).
awk '/^\[/ { skip = ($0 == "[camera]") }
     !skip { if ($0 == "") blank++; else { while (blank) { print ""; blank-- } print } }' "$CONFIG" >"$WORK/config.toml"
cat >>"$WORK/config.toml" <<EOF

[camera]
source = "replay"
replay_path = "$REPLAY_DIR/qr.png"
EOF
install -m 0640 -o root -g "$SERVICE_USER" "$WORK/config.toml" "$CONFIG"

# --- 4. daemon, office receiver, card -----------------------------------------------------------------------------
say "4/4 daemon as $SERVICE_USER, office receiver, virtual card"
# What the README's third step says (check it), as the service user, before the daemon takes the reader.
# Informational: the delivery below is what decides PASS.
DOCTOR=ok
(cd / && runuser -u "$SERVICE_USER" -- env GPIOZERO_PIN_FACTORY=mock "$CLI" doctor --config "$CONFIG") \
    >"$WORK/doctor.log" 2>&1 || DOCTOR=failed
sed 's/^/    doctor: /' "$WORK/doctor.log"

DAEMON_LOG=$WORK/daemon.log
start_bg daemon "$DAEMON_LOG" env -C / runuser -u "$SERVICE_USER" -- env GPIOZERO_PIN_FACTORY=mock \
    "$CLI" run --config "$CONFIG"
DAEMON_PID=${PIDS[-1]}
daemon_ready() { grep -q "terminal $TERMINAL_ID ready" "$DAEMON_LOG"; }
if ! wait_for "$READY_TIMEOUT" "$DAEMON_PID" daemon_ready; then
    show_log daemon "$DAEMON_LOG"
    fail "the daemon did not report 'terminal $TERMINAL_ID ready' within $READY_TIMEOUT s"
fi
say "daemon ready (pid $DAEMON_PID, as $SERVICE_USER)"

# The office waits for one result signed at or after the tap (--since): an older one left in the terminal's
# outbox by an interrupted earlier run may arrive first; it is stored, but does not count. The receiver exits
# 0 once it stored a fresh one, 1 after --timeout. Tap only once it is subscribed, so the result cannot pass by.
TAPPED_AT=$(date +%s)
RESULTS_DB=$WORK/office/results.db
mkdir -p "$WORK/office"
RECEIVER_LOG=$WORK/receiver.log
start_bg receiver "$RECEIVER_LOG" "$CLI" receive --host 127.0.0.1 --port "$BROKER_PORT" --ward "$WARD" \
    --db "$RESULTS_DB" --cert "$DEVICE_CERT" --ca "$BROKER_CA" --client-cert "$OFFICE_CERT" \
    --client-key "$OFFICE_KEY" --client-id "install-check-office" \
    --count 1 --since "$TAPPED_AT" --timeout "$RESULT_TIMEOUT"
RECEIVER_PID=${PIDS[-1]}
receiver_subscribed() { grep -q "subscribed to " "$RECEIVER_LOG"; }
wait_for 20 "$RECEIVER_PID" receiver_subscribed || {
    show_log receiver "$RECEIVER_LOG"
    fail "the office receiver did not subscribe at the broker"
}

say "tapping the '$PROFILE' card on vpcd port $VPCD_PORT"
start_bg card "$WORK/card.log" "$CLI" sim card --profile "$PROFILE" --port "$VPCD_PORT"
CARD_PID=${PIDS[-1]}
receiver_done() { ! alive "$RECEIVER_PID"; }
# The receiver's own --timeout bounds this wait; a dying daemon ends it early. Then its exit code decides.
if ! wait_for $((RESULT_TIMEOUT + 30)) "$DAEMON_PID" receiver_done || ! wait "$RECEIVER_PID"; then
    show_log daemon "$DAEMON_LOG"
    show_log card "$WORK/card.log"
    show_log receiver "$RECEIVER_LOG"
    alive "$DAEMON_PID" || say "the daemon exited"
    alive "$CARD_PID" || say "the virtual card exited"
    fail "no result signed after the tap stored at the office: see the logs above"
fi
# The receiver printed that result's summary (no personal data): take its verdict, and its token from the database.
"$PY" - "$RECEIVER_LOG" "$RESULTS_DB" "$TAPPED_AT" "$WORK/result.jws" <<'EOF' >"$WORK/stored.env" ||
import json
import sqlite3
import sys

log_path, db_path, tapped, token_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with open(log_path, encoding="utf-8") as log:  # its JSON lines, among its log lines
    outcomes = [json.loads(line) for line in log if line.startswith("{")]
fresh = next(o for o in outcomes if o["status"] == "stored" and o["iat"] >= tapped)
with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
    (token,) = db.execute("SELECT token FROM results WHERE iss=? AND jti=?", (fresh["iss"], fresh["jti"])).fetchone()
    (count,) = db.execute("SELECT count(*) FROM results").fetchone()
with open(token_path, "w", encoding="ascii") as out:
    out.write(token)
print(f"STORED_COUNT={count}")
print(f"STORED_ISS={fresh['iss']}")
print(f"STORED_SEQ={fresh['seq']}")
print(f"STORED_VERDICT={fresh['verdict']}")
EOF
    fail "the receiver reported a stored result, but its line or row is not readable (see the error above)"
DELIVERED_AT=$(date +%s)

# shellcheck source=/dev/null
. "$WORK/stored.env"
VERIFY_OK=no
VERIFY_VERDICT=none
if "$CLI" verify "$WORK/result.jws" --cert "$DEVICE_CERT" --summary >"$WORK/verify.json" 2>&1 \
        && grep -q '"valid": true' "$WORK/verify.json"; then
    VERIFY_OK=yes
    VERIFY_VERDICT=$(sed -n 's/^ *"verdict": "\([a-z_]*\)".*/\1/p' "$WORK/verify.json")
fi
DAEMON_STATE=exited
alive "$DAEMON_PID" && DAEMON_STATE=running
# runuser forks: the daemon is its child; show who it really runs as.
DAEMON_CHILD=$(children "$DAEMON_PID")
DAEMON_CHILD=${DAEMON_CHILD%% *}
DAEMON_USER=$(stat -c %U "/proc/${DAEMON_CHILD:-0}" 2>/dev/null || echo unknown)

echo
echo "install-check summary"
echo "  installed      $PREFIX ($("$CLI" --version)), user $SERVICE_USER, unit /etc/systemd/system/cccd-edge.service"
echo "  provisioned    terminal $TERMINAL_ID, ward $WARD (temporary ward CA), config $CONFIG"
echo "  broker         mosquitto 127.0.0.1:$BROKER_PORT, mutual TLS (client CAs: broker CA + ward CA)"
echo "  pcscd          $PCSCD_KIND, vpcd port $VPCD_PORT"
echo "  daemon         $DAEMON_STATE (pid $DAEMON_CHILD) as user $DAEMON_USER, tap -> stored at the office $((DELIVERED_AT - TAPPED_AT)) s"
echo "  doctor         $(tail -n 1 "$WORK/doctor.log") ($DOCTOR; informational)"
echo "  card           profile $PROFILE"
echo "  office         result of this tap: iss $STORED_ISS seq $STORED_SEQ verdict $STORED_VERDICT ($STORED_COUNT stored)"
echo "  verify         cccd-edge verify --cert device.crt: signature valid $VERIFY_OK, verdict $VERIFY_VERDICT"
echo "  wall time      $(($(date +%s) - STARTED)) s"
if [ "$STORED_VERDICT" = verified ] && [ "$STORED_ISS" = "$TERMINAL_ID" ] && [ "$VERIFY_VERDICT" = verified ] \
        && [ "$DAEMON_STATE" = running ] && [ "$DAEMON_USER" = "$SERVICE_USER" ]; then
    echo "install-check: PASS"
    exit 0
fi
show_log daemon "$DAEMON_LOG"
show_log verify "$WORK/verify.json"
echo "install-check: FAIL" >&2
exit 1
