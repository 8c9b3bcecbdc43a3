#!/usr/bin/env bash
# Debian packages the tests need. Installs only what is missing; runs apt-get update once, and only when needed.
#   openjdk-17-jdk-headless maven   the real OpenSearch node (scripts/opensearch.sh)
#   bsdutils rsyslog rsyslog-gnutls real syslog senders (logger; rsyslog forwarding over TCP and TLS)
#   openssh-server nftables iptables iproute2   the namespace firewall the playbook tests drive through netmiko
#   poppler-utils                   pdftoppm, to prove report PDFs render
#   prometheus                      promtool, to check /metrics and the shipped alerting rules
#   yara                            the yara command-line tool, the reference the YARA scanner is compared with
#   openssl libssl-dev gcc          test certificates; building yara-python from source (with its hash module)
#   chromium chromium-driver        the console's browser tests (Playwright drives Debian's Chromium; no browser
#                                   is ever downloaded)
#   nodejs npm                      `npm ci` of the browser tests' lockfile (axe-core, tests/browser/package-lock.json)
#   nmap                            the periodic assessment's port and service scan (assessment/nmap.py)
set -euo pipefail
packages=(openjdk-17-jdk-headless maven bsdutils curl rsyslog rsyslog-gnutls openssh-server nftables iptables iproute2
          poppler-utils prometheus yara openssl libssl-dev gcc chromium chromium-driver nodejs npm nmap)
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
# Node.js and npm from elsewhere (NodeSource's nodejs carries npm) are as good as Debian's.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}")
  missing=("${missing[@]/npm}")
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
# Packages such as openssh-server and prometheus would start their daemons on install: the tests start their own.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee $policy >/dev/null && $SUDO chmod +x $policy && made_policy=1
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if [[ $made_policy -eq 1 ]]; then
  $SUDO rm -f $policy
fi
