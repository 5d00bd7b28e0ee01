#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for hatchery: system packages and a virtualenv.
# Idempotent: a second run installs nothing and says so.
#   scripts/setup.sh            # what the quick start needs (mosquitto, clients)
#   scripts/setup.sh --test     # plus what the test suite needs (docker, dnsmasq, sshd,
#                               # prometheus, alertmanager, headless chromium, tmux,
#                               # nftables and faketime for the security tests, ...)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(mosquitto mosquitto-clients python3-venv)
if [[ "${1:-}" == "--test" ]]; then
  packages+=(docker.io dnsmasq-base openssh-server openssh-client mmdebstrap prometheus systemd
             prometheus-alertmanager chromium chromium-driver tmux iproute2 nftables faketime)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: system packages present (${packages[*]})"
fi

# Debian's package starts a system-wide mosquitto on 1883 where systemd runs;
# hatchery runs its own broker from the state directory, so stop that one.
if command -v systemctl >/dev/null && systemctl is-active --quiet mosquitto 2>/dev/null; then
  echo "setup: stopping the system mosquitto service (hatchery runs its own)"
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo systemctl disable --now mosquitto >/dev/null 2>&1 || true
fi

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv"
  "$python" -m venv .venv
fi
extra=""; [[ "${1:-}" == "--test" ]] && extra="[test]"
# (grep: this machine's pip config names find-links folders that may not exist;
#  pipefail still fails the script when pip fails)
.venv/bin/pip install -q --disable-pip-version-check -e ".${extra}" 2>&1 | { grep -v "^WARNING: Location" || true; }
echo "setup: .venv ready ($(.venv/bin/python --version))"
