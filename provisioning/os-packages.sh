#!/usr/bin/env bash
# Installs the Debian packages the box and its tests need, if any are missing.
# Idempotent: with everything present it only checks and returns.
#
# The list is the whole truth: packages are installed without their
# recommendations (an appliance installs what it needs and nothing else), so
# what a tool only *recommends* but we use is named here too. `npm run
# check:fresh` proves it on a minimal Debian root that has nothing else.
#   --bench        also what the benchmarks need: opendkim, the milter that signs for
#                  bench:postfix's second peer (Postfix itself is in the main list, for the
#                  return-path test). Its own service is disabled right after the install.
#   --check-fresh  only what `npm run check:fresh` needs on the host: debootstrap, git.
#   --reliability  also what `npm run check:reliability` needs: sslscan (the TLS scan).
set -euo pipefail

PACKAGES=(
  ca-certificates
  openssl
  python3       # node-gyp (pkcs11js is compiled during npm ci); test helpers
  make          # node-gyp builds pkcs11js with make and g++
  g++
  gcc           # builds the ten-line module that reaches NSS softokn's FIPS mode in the tests (#38)
  softhsm2      # embedded-default HSM (M6): PKCS#11 token in the data directory
  opensc        # pkcs11-tool: inspect the token from outside the box's code
  libnss3       # NSS softokn (libsoftokn3.so): the second PKCS#11 implementation the HSM suites run on (#38)
  libnss3-tools # certutil: makes a softokn database with its password for those tests, outside the box's code
  python3-dkim  # dkimverify: independent DKIM verifier for tests (M4)
  python3-nacl  # lets python3-dkim verify ed25519-sha256 signatures (RFC 8463)
  python3-jsonschema  # an independent JSON Schema validator for the configuration schema (docs/configuration.schema.json)
  swaks         # independent SMTP client for tests and the README walk-through
  libnet-ssleay-perl     # swaks only recommends its TLS modules; without them
  libio-socket-ssl-perl  # `swaks -tls` exits "TLS not available"
  qpdf          # encrypted PDF fixtures for the policy tests (M13), and their judge
  file          # file --mime-type: the independent judge of the policy's content sniffing (#32)
  python3-icu   # ICU's UTS #39 confusables: the source of firmware/pii/latin-confusables.json,
                # which a test regenerates and compares (npm run unicode:confusables)
  zip           # encrypted ZIP fixtures (zip -P) for the policy tests
  unzip         # zipinfo: an independent reader of ZIP archives for the differential tests
  iproute2      # tc (kernel egress shaping, M3), the egress addresses, ip netns for their tests
  nftables      # the box's firewall (S8): provisioning writes and applies its ruleset
  systemd       # the service manager the unit runs under; systemd-analyze checks the unit in tests
  git           # npm run image -- build lists the checkout's files (git ls-files)
  postgresql    # a real PostgreSQL server for the shared-ledger tests (reports.postgres)
  postfix       # a real MTA: the return-path test's next hop, whose genuine DSNs come back to
                # the box (M8); bench:postfix's peer and its smtp-source/smtp-sink load tools.
                # Installed unconfigured ("No configuration"): it starts nothing on port 25.
  prometheus    # promtool: checks and unit-tests the alert rules in docs/monitoring (S11). Its
                # server is not wanted here: it is disabled right after the install (below).
  chromium      # headless browser for the admin page's tests (playwright-core drives it)
  fonts-noto-cjk  # chromium only recommends fonts: without a CJK one the page's zh-TW
                  # labels render as boxes in the test screenshots
)

case "${1:-}" in
  --bench) PACKAGES+=(opendkim) ;;
  --check-fresh) PACKAGES=(debootstrap git) ;;
  --reliability) PACKAGES+=(sslscan) ;;
  "") ;;
  *) echo "os-packages: unknown option $1 (--bench, --check-fresh, --reliability)" >&2; exit 2 ;;
esac

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "os-packages: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "os-packages: run as root, or install: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
# Postfix asks for a mail setup on install; "No configuration" leaves it stopped.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's prometheus package enables and starts its server (:9090 on every address): only promtool is used.
if printf '%s\n' "${missing[@]}" | grep -qx prometheus && command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
# Debian's opendkim package starts its own milter: bench:postfix runs one of its own.
if printf '%s\n' "${missing[@]}" | grep -qx opendkim && command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl disable --now opendkim >/dev/null 2>&1 || true
fi
