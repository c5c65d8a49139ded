#!/usr/bin/env bash
# The walk-through of the README ("A first look") and docs/testing.md ("The development box in detail"), as written there, against a running development box
# (npm start): `npm run check:fresh` runs it on a fresh Debian root, so every
# command the README shows a newcomer is known to work on a machine that has
# only what the README's two commands install. Prints "walkthrough: ok <what>"
# for each command; stops at the first that fails.
set -euo pipefail
cd "$(dirname "$0")/.."

ok() { echo "walkthrough: ok $*"; }
fail() { echo "walkthrough: FAILED $*" >&2; exit 1; }

# swaks submits one statement over STARTTLS with the generated password.
out="$(swaks --server 127.0.0.1:2587 -tls --auth PLAIN --auth-user statements \
  --auth-password "$(cat var/secrets/submission-statements.password)" \
  --from statements@bank.example --to customer@example.net 2>&1)" || { echo "$out"; fail "swaks submission"; }
id="$(printf '%s\n' "$out" | sed -n 's/.*250 2\.0\.0 Ok: queued as \([A-Za-z0-9_-]*\).*/\1/p' | tail -n1)"
[ -n "$id" ] || { echo "$out"; fail "swaks: no 'queued as' in the reply"; }
ok "swaks over STARTTLS: queued as $id"

# TLS 1.2 with an ECDHE suite; TLS 1.1 refused by the box with a protocol_version alert.
s="$(openssl s_client -connect 127.0.0.1:2465 -tls1_2 </dev/null 2>&1)" || { echo "$s"; fail "openssl s_client -tls1_2"; }
printf '%s\n' "$s" | grep -Eq 'Cipher is ECDHE-' || { echo "$s"; fail "TLS 1.2 without an ECDHE suite"; }
ok "openssl s_client -tls1_2: $(printf '%s\n' "$s" | grep -Eo 'Cipher is [A-Z0-9-]+' | head -n1)"
if s="$(openssl s_client -connect 127.0.0.1:2465 -tls1_1 </dev/null 2>&1)"; then
  echo "$s"; fail "TLS 1.1 was accepted"
fi
printf '%s\n' "$s" | grep -Eqi 'alert protocol version|unsupported protocol|wrong version' || { echo "$s"; fail "TLS 1.1 refused, but not for its version"; }
ok "openssl s_client -tls1_1: refused ($(printf '%s\n' "$s" | grep -Eoi 'alert protocol version|unsupported protocol|wrong version' | head -n1))"

npm run -s status >/tmp/walkthrough.$$ 2>&1 || { cat /tmp/walkthrough.$$; fail "npm run status"; }
grep -q '^queue ' /tmp/walkthrough.$$ || { cat /tmp/walkthrough.$$; fail "npm run status printed no queue line"; }
ok "npm run status: $(grep '^queue ' /tmp/walkthrough.$$)"

npm run -s queue -- list >/tmp/walkthrough.$$ 2>&1 || { cat /tmp/walkthrough.$$; fail "npm run queue -- list"; }
grep -q "$id" /tmp/walkthrough.$$ || { cat /tmp/walkthrough.$$; fail "the swaks mail $id is not in npm run queue -- list"; }
ok "npm run queue -- list shows $id"

npm run -s queue -- show "$id" >/tmp/walkthrough.$$ 2>&1 || { cat /tmp/walkthrough.$$; fail "npm run queue -- show"; }
ok "npm run queue -- show $id"

# The trail is written in groups; give the last one a moment.
for _ in 1 2 3 4 5 6 7 8 9 10; do
  npm run -s audit -- search --id "$id" >/tmp/walkthrough.$$ 2>&1 || { cat /tmp/walkthrough.$$; fail "npm run audit -- search"; }
  grep -q '"type":"spool.queued"' /tmp/walkthrough.$$ && break
  sleep 0.5
done
grep -q '"type":"spool.queued"' /tmp/walkthrough.$$ || { cat /tmp/walkthrough.$$; fail "npm run audit -- search --id $id found no spool.queued record"; }
ok "npm run audit -- search --id $id: $(wc -l </tmp/walkthrough.$$) records"

npm run -s audit -- verify >/tmp/walkthrough.$$ 2>&1 || { cat /tmp/walkthrough.$$; fail "npm run audit -- verify"; }
ok "npm run audit -- verify"

npm run -s dkim -- dns >/tmp/walkthrough.$$ 2>&1 || { cat /tmp/walkthrough.$$; fail "npm run dkim -- dns"; }
grep -q '_domainkey.bank.example' /tmp/walkthrough.$$ || { cat /tmp/walkthrough.$$; fail "npm run dkim -- dns printed no record for bank.example"; }
ok "npm run dkim -- dns"

# The admin page answers over TLS and sends a box without an administrator to its setup.
s="$(printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' | openssl s_client -connect 127.0.0.1:8443 -quiet 2>/dev/null)" || true
printf '%s\n' "$s" | tr -d '\r' | grep -qi '^location: /setup$' || { echo "$s"; fail "the admin page did not send a new box to /setup"; }
[ -s var/admin/setup-code ] || fail "no one-time setup code in var/admin/setup-code"
ok "admin page https://127.0.0.1:8443/: a new box goes to /setup; the setup code is in var/admin/setup-code"

npm run -s hsm -- status >/tmp/walkthrough.$$ 2>&1 || { cat /tmp/walkthrough.$$; fail "npm run hsm -- status"; }
grep -q 'smime/dev' /tmp/walkthrough.$$ || { cat /tmp/walkthrough.$$; fail "npm run hsm -- status does not list the S/MIME certificate"; }
ok "npm run hsm -- status"

# The statement ledger (#16): the demo's batch (demo-YYYYMMDDhhmmss) with every statement delivered.
# The ledger follows the trail a moment behind; give it a few seconds.
for _ in 1 2 3 4 5 6 7 8 9 10; do
  npm run -s reports -- summary >/tmp/walkthrough.$$ 2>&1 || { cat /tmp/walkthrough.$$; fail "npm run reports -- summary"; }
  # batch  submitted  refused  delivered …: a demo batch whose delivered count equals its submitted count.
  awk '$1 ~ /^demo-/ && $2 == $4 && $2 > 0 { found = 1 } END { exit !found }' /tmp/walkthrough.$$ && break
  sleep 1
done
awk '$1 ~ /^demo-/ && $2 == $4 && $2 > 0 { found = 1 } END { exit !found }' /tmp/walkthrough.$$ ||
  { cat /tmp/walkthrough.$$; fail "npm run reports -- summary shows no demo batch with all of it delivered"; }
ok "npm run reports -- summary: $(awk '$1 ~ /^demo-/ { print $1 ": " $2 " submitted, " $4 " delivered" }' /tmp/walkthrough.$$ | tail -n1)"

rm -f /tmp/walkthrough.$$
