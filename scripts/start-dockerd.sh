#!/usr/bin/env bash
# Start dockerd in the background when no engine answers (CI machines start with none).
set -euo pipefail
if docker info >/dev/null 2>&1; then
  echo "dockerd: already running"; exit 0
fi
command -v dockerd >/dev/null || { echo "dockerd: not installed (apt-get install docker.io)"; exit 3; }
sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
$sudo sh -c 'nohup dockerd >/var/log/hatchery-dockerd.log 2>&1 &'
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && { echo "dockerd: started"; exit 0; }
  sleep 0.5
done
echo "dockerd: did not start; see /var/log/hatchery-dockerd.log"; tail -20 /var/log/hatchery-dockerd.log; exit 3
