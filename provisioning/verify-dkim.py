"""Checks DKIM signatures with python3-dkim, an implementation independent of the box.

    /usr/bin/python3 provisioning/verify-dkim.py RECORDS_JSON < list-of-files

RECORDS_JSON maps owner names ("dev._domainkey.bank.example") to TXT values, as
`npm run dkim -- dns` publishes them; no real DNS is asked. Every file named on
stdin (one path a line) is checked, all of its DKIM-Signature fields; prints
"PASS <path>" or "FAIL <path> <reason>" a line each.
"""
import json
import sys

import dkim

records = json.loads(sys.argv[1])


def dnsfunc(name, timeout=5):
    n = name.decode() if isinstance(name, bytes) else name
    value = records.get(n.rstrip('.'))
    return value.encode() if value else None


for line in sys.stdin:
    path = line.strip()
    if not path:
        continue
    try:
        with open(path, 'rb') as f:
            message = f.read()
        d = dkim.DKIM(message)
        count = len([h for h in d.headers if h[0].lower() == b'dkim-signature'])
        if count == 0:
            print('FAIL', path, 'no DKIM-Signature', flush=True)
            continue
        bad = [i for i in range(count) if not d.verify(idx=i, dnsfunc=dnsfunc)]
        if bad:
            print('FAIL', path, 'signature(s) %s do not verify' % bad, flush=True)
        else:
            print('PASS', path, flush=True)
    except Exception as e:  # a verifier error is a failure of that mail, not of the run
        print('FAIL', path, '%s: %s' % (type(e).__name__, e), flush=True)
