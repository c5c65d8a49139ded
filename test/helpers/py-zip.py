"""Python's zipfile as an independent ZIP reader, for differential tests (test/helpers/py-zip.ts).

Reads JSON lines {"b64": "<archive>"}, or with --one a single archive as raw bytes on stdin;
writes one JSON line each: {"entries": [[name_hex, flag_bits], ...]} or {"error": "..."}.
A name is given as the bytes the archive holds (hex), read by the flags' UTF-8 bit.
"""
import base64
import io
import json
import sys
import zipfile


def reading(raw):
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            return {'entries': [[i.orig_filename.encode('utf-8' if i.flag_bits & 0x800 else 'cp437').hex(), i.flag_bits] for i in z.infolist()]}
    except Exception as e:
        return {'error': '%s: %s' % (type(e).__name__, e)}


if sys.argv[1:] == ['--one']:
    print(json.dumps(reading(sys.stdin.buffer.read())), flush=True)
else:
    for line in sys.stdin:
        line = line.strip()
        if line:
            print(json.dumps(reading(base64.b64decode(json.loads(line)['b64']))), flush=True)
