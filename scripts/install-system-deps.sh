#!/usr/bin/env bash
# Debian packages the tests need: a JDK and Maven (the real OpenSearch node), logger (real syslog sender).
# Installs only what is missing; runs apt-get update once, and only when something is missing.
set -euo pipefail
packages=(openjdk-17-jdk-headless maven bsdutils curl)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# A JDK from elsewhere (javac and java 17+ on PATH) is as good as Debian's.
if [[ " ${missing[*]} " == *" openjdk-17-jdk-headless "* ]] && command -v javac >/dev/null && command -v java >/dev/null; then
  missing=("${missing[@]/openjdk-17-jdk-headless}")
fi
if [[ " ${missing[*]} " == *" maven "* ]] && command -v mvn >/dev/null; then
  missing=("${missing[@]/maven}")
fi
read -r -a missing <<< "${missing[*]}"
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "install-system-deps: installing ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
