"""Python's email package as an independent MIME reader, for differential tests.

Reads JSON lines {"b64": "<message>"} on stdin; for each writes one JSON line
{"compat32": LEAVES, "default": LEAVES} where LEAVES is the list of leaf parts
as that policy reads them — {"type", "filename", "sha256"} of the decoded
payload — or {"error": "..."}.
"""
import base64
import hashlib
import json
import sys
from email import policy
from email.header import decode_header, make_header
from email.parser import BytesParser


def leaves(raw, pol):
    try:
        msg = BytesParser(policy=pol).parsebytes(raw)
        out = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            fn = part.get_filename()
            if fn is not None:
                try:
                    fn = str(make_header(decode_header(str(fn))))
                except Exception:
                    fn = str(fn)
            payload = part.get_payload(decode=True)
            if payload is None:
                payload = b''
            out.append({'type': part.get_content_type(), 'filename': fn or '', 'sha256': hashlib.sha256(payload).hexdigest()})
        return out
    except Exception as e:
        return {'error': '%s: %s' % (type(e).__name__, e)}


for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    raw = base64.b64decode(json.loads(line)['b64'])
    print(json.dumps({'compat32': leaves(raw, policy.compat32), 'default': leaves(raw, policy.default)}), flush=True)
