"""Python's zipfile as an independent ZIP reader, for differential tests.

Reads JSON lines {"b64": "<archive>"}; writes one JSON line each:
{"entries": [[name, encrypted], ...]} or {"error": "..."}.
"""
import base64
import io
import json
import sys
import zipfile

for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    raw = base64.b64decode(json.loads(line)['b64'])
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            print(json.dumps({'entries': [[i.filename, bool(i.flag_bits & 1)] for i in z.infolist()]}), flush=True)
    except Exception as e:
        print(json.dumps({'error': '%s: %s' % (type(e).__name__, e)}), flush=True)
