import { execFileSync } from 'node:child_process'

/**
 * Python (Debian's /usr/bin/python3, with its standard library) as an
 * independent judge for differential tests: `script` defines `judge(x)`;
 * every input goes in as one JSON line and its result comes back as one, all
 * in one process. Bytes travel as base64 strings.
 */
export function pythonEach<I, O>(script: string, inputs: readonly I[]): O[] {
  if (inputs.length === 0) return []
  const program = `import json, sys\n${script}\nfor line in sys.stdin:\n    print(json.dumps(judge(json.loads(line))))\n`
  const out = execFileSync('/usr/bin/python3', ['-c', program], { input: `${inputs.map((i) => JSON.stringify(i)).join('\n')}\n`, maxBuffer: 256 << 20 })
  return out
    .toString()
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as O)
}
