#!/usr/bin/env bash
# npm run check:fresh — the README's two commands on a really fresh Debian machine.
#
# A green run on a long-lived machine can hide an install step nobody wrote
# down (a package installed by hand long ago). This builds a minimal Debian root
# (debootstrap --variant=minbase, from the Debian archive this machine's apt
# uses, cached between runs) with only Debian's nodejs and npm in it, copies in
# a clean clone of HEAD, and runs inside it, as a newcomer would:
#
#   npm test                       the whole suite, 0 failures
#   npm start                      until it says it is running
#   npm run demo -- --count 200    both signatures verified on all 200
#   the README's walk-through      swaks, openssl s_client, status, queue, audit, dkim
#
# Each step is printed with its time; the first failure stops the run with the
# last lines of its output and a non-zero exit. Needs root (debootstrap, chroot,
# mounts). Environment:
#   SG_FRESH_CACHE   cache directory (default /var/cache/statement-gateway/fresh)
#   SG_FRESH_KEEP=1  keep the root afterwards (its path is printed)
#   SG_FRESH_STEPS   space-separated subset of: test start demo walkthrough
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
if [ "$(id -u)" -ne 0 ]; then
  echo "check:fresh: needs root (debootstrap, chroot and mounts)" >&2
  exit 1
fi
bash "$repo/provisioning/os-packages.sh" --check-fresh

. /etc/os-release
codename="${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}"

# The Debian archive and security URIs this machine's apt uses (deb822 or one-line
# format); deb.debian.org when none can be read.
apt_uri() { # $1: suite to look for (e.g. bookworm or bookworm-security)
  local suite="$1" f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v want="$suite" '
      /^[[:space:]]*$/ { if (uri && ok) { print uri; exit } uri=""; ok=0; next }
      /^URIs:/ { uri=$2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == want) ok=1 }
      END { if (uri && ok) print uri }' "$f"
  done | head -n1
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v want="$suite" '$1 == "deb" { for (i = 3; i <= NF; i++) if ($i == want) { print ($2 ~ /^\[/ ? $3 : $2); exit } }' "$f"
  done | head -n1
}
mirror="$(apt_uri "$codename" | head -n1)"; mirror="${mirror:-http://deb.debian.org/debian}"
security="$(apt_uri "$codename-security" | head -n1)"; security="${security:-http://deb.debian.org/debian-security}"

cache="${SG_FRESH_CACHE:-/var/cache/statement-gateway/fresh}"
mkdir -p "$cache/apt-archives" "$cache/npm"
key="$(printf '%s %s %s' "$codename" "$mirror" "$security" | sha256sum | cut -c1-12)"
base="$cache/base-$codename-$key.tar"
work="$(mktemp -d /var/tmp/sg-fresh.XXXXXX)"
root="$work/root"
log="$work/log"
: >"$log"
steps="${SG_FRESH_STEPS:-test start demo walkthrough}"
box_pgid=""

cleanup() {
  local rc=$?
  if [ -n "$box_pgid" ]; then kill -KILL -- "-$box_pgid" 2>/dev/null || true; fi
  if [ "${SG_FRESH_KEEP:-}" = 1 ]; then
    echo "check:fresh: root kept in $root (log: $log)"
  elif [ $rc -eq 0 ]; then
    rm -rf "$work"
  else
    echo "check:fresh: the root and the full log are kept in $work"
  fi
}
trap cleanup EXIT

started_all=$(date +%s.%N)
step_started=0
begin() { step_started=$(date +%s.%N); printf '%-58s' "$1" ; echo "=== $1" >>"$log"; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'; }
ok() { echo "ok  $(elapsed "$step_started")${1:+  ($1)}"; }
fail() {
  echo "FAILED after $(elapsed "$step_started")"
  echo "--- last lines of the output ($log) ---"
  tail -n "${2:-40}" "$log"
  echo "check:fresh: $1" >&2
  exit 1
}

# Runs a command inside the root as root, in a mount namespace of its own: /proc,
# /sys, /dev and a tmpfs /tmp and /run exist there and vanish with the command.
# Downloads are cached (apt archives, npm's cache): the same bytes a fresh machine
# would fetch, verified the same way, only not fetched twice.
# The machine's network settings travel into the root (a proxy, the CA of a TLS-inspecting
# egress): they belong to the network this machine is on, not to the project.
netenv=()
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY NODE_EXTRA_CA_CERTS; do
  if [ -n "${!v:-}" ]; then netenv+=("$v=${!v}"); fi
done
inroot() {
  unshare --mount --propagation private -- bash -c '
    set -e
    r="$1"; cache="$2"; shift 2
    mount --bind "$r" "$r"   # the root is a mount point, as on a machine (ip netns exec needs it)
    mount -t proc proc "$r/proc"
    mount --rbind /sys "$r/sys"
    mount --rbind /dev "$r/dev"
    mount -t tmpfs -o size=8g,mode=1777 tmpfs "$r/tmp"
    mount -t tmpfs -o mode=755 tmpfs "$r/run"
    mount --bind "$cache/apt-archives" "$r/var/cache/apt/archives"
    mkdir -p "$r/root/.npm"
    mount --bind "$cache/npm" "$r/root/.npm"
    # The labelled bounce corpus is read in place by the tests (never copied into the repo): it
    # appears read-only where a clone in /root finds it, at ../shared/corpus/bounces.
    if [ -n "$CORPUS" ] && [ -d "$CORPUS" ]; then
      mkdir -p "$r/root/shared/corpus/bounces"
      mount --bind -o ro "$CORPUS" "$r/root/shared/corpus/bounces"
    fi
    exec chroot "$r" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      LANG=C.UTF-8 TERM=dumb SG_FRESH_CHROOT=1 DEBIAN_FRONTEND=noninteractive $NETENV bash -c "$*"
  ' inroot "$root" "$cache" "$@"
}
export NETENV="${netenv[*]:-}"
export CORPUS="${SG_BOUNCE_CORPUS:-$(cd "$repo/.." && pwd)/shared/corpus/bounces}"

echo "check:fresh: Debian $codename from $mirror (security: $security)"
if [ ! -f "$base" ]; then
  begin "build the minimal root (debootstrap --variant=minbase)"
  tmp="$work/base"
  debootstrap --variant=minbase "$codename" "$tmp" "$mirror" >>"$log" 2>&1 || fail "debootstrap failed"
  cat >"$tmp/etc/apt/sources.list" <<EOF
deb $mirror $codename main
deb $mirror $codename-updates main
deb $security $codename-security main
EOF
  ok
  begin "install Debian's nodejs and npm (nothing else)"
  cp /etc/resolv.conf "$tmp/etc/resolv.conf"
  root="$tmp" inroot 'apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm && apt-get clean' >>"$log" 2>&1 || fail "could not install nodejs and npm"
  tar -C "$tmp" -cf "$base.tmp" . && mv "$base.tmp" "$base"
  rm -rf "$tmp"
  ok "cached as $base"
fi

begin "unpack the root"
mkdir -p "$root"
tar -C "$root" -xf "$base"
cp /etc/resolv.conf "$root/etc/resolv.conf"
extra_cas=0
for c in /usr/local/share/ca-certificates/*.crt; do
  [ -f "$c" ] || continue
  cp "$c" "$root/usr/local/share/ca-certificates/" && extra_cas=$((extra_cas + 1))
done
if [ "$extra_cas" -gt 0 ]; then inroot 'update-ca-certificates >/dev/null' >>"$log" 2>&1 || fail "update-ca-certificates failed in the root"; fi
ok "$(inroot 'echo "node $(node --version), npm $(npm --version)"' 2>>"$log")"
if [ "$extra_cas" -gt 0 ] || [ ${#netenv[@]} -gt 0 ]; then
  echo "      carried in from this machine's network: $extra_cas local CA certificate(s); ${netenv[*]:-no proxy settings}"
fi

begin "clone HEAD into /root/statement-gateway"
git -C "$repo" rev-parse --verify -q HEAD >/dev/null || fail "no commit to check in $repo"
git clone -q --no-local "$repo" "$root/root/statement-gateway" >>"$log" 2>&1 || fail "git clone failed"
head="$(git -C "$root/root/statement-gateway" rev-parse --short HEAD)"
dirty=""
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then dirty="; uncommitted changes are not part of the check"; fi
ok "$head$dirty"

app=/root/statement-gateway
want() { case " $steps " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if want test; then
  begin "npm test"
  inroot "cd $app && npm test" >>"$log" 2>&1 || fail "npm test failed" 80
  summary="$(grep -aE '^# \{ total:' "$log" | tail -n1 | sed 's/^# //')"
  skipped="$(grep -ac '# SKIP' "$log" || true)"
  ok "$summary${skipped:+, $skipped skip lines}"
  grep -a '# SKIP' "$log" | sed 's/^ */      skipped: /' | sort -u || true
fi

if want start || want demo || want walkthrough; then
  begin "npm start (until it is running)"
  setsid bash -c "$(declare -f inroot); root='$root' cache='$cache' inroot 'cd $app && npm start'" >"$work/start.log" 2>&1 &
  box_pid=$!
  box_pgid=$box_pid
  for _ in $(seq 1 600); do
    grep -q 'Statement Gateway is running' "$work/start.log" && break
    kill -0 "$box_pid" 2>/dev/null || { cat "$work/start.log" >>"$log"; fail "npm start exited before it was running"; }
    sleep 0.5
  done
  grep -q 'Statement Gateway is running' "$work/start.log" || { cat "$work/start.log" >>"$log"; fail "npm start did not say it was running within 300 s"; }
  ok
  sed -n '/Statement Gateway is running/,/Stop it with/p' "$work/start.log" | sed 's/^/      /'
fi

if want demo; then
  begin "npm run demo -- --count 200"
  inroot "cd $app && npm run -s demo -- --count 200" >>"$log" 2>&1 || { cat "$work/start.log" >>"$log"; fail "the demo failed"; }
  ok
  grep -a '^Done:' "$log" | tail -n1 | sed 's/^/      /'
fi

if want walkthrough; then
  begin "the README walk-through"
  inroot "cd $app && bash provisioning/walkthrough.sh" >>"$log" 2>&1 || fail "a README command failed"
  ok "$(grep -ac '^walkthrough: ok' "$log") commands"
fi

if [ -n "$box_pgid" ]; then
  begin "stop the box (Ctrl-C)"
  kill -INT -- "-$box_pgid" 2>/dev/null || true
  for _ in $(seq 1 120); do kill -0 "$box_pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$box_pid" 2>/dev/null; then cat "$work/start.log" >>"$log"; fail "the box did not stop within 60 s of SIGINT"; fi
  wait "$box_pid" 2>/dev/null && rc=0 || rc=$?
  box_pgid=""
  cat "$work/start.log" >>"$log"
  [ "$rc" -eq 0 ] || [ "$rc" -eq 130 ] || fail "npm start exited $rc after SIGINT"
  ok
fi

echo "check:fresh: passed in $(elapsed "$started_all")"
