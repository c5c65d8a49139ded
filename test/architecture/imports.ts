import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, normalize } from 'node:path'
import ts from 'typescript'

/**
 * The layers of the firmware, lowest first (DESIGN.md "Layout"): a module may
 * import from its own group and from groups in lower layers, never from a
 * peer in its own layer or from above. A group is a folder (`firmware/spool`)
 * or a single file at the top of `firmware/` or `hal/`.
 */
export const LAYERS: readonly (readonly string[])[] = [
  ['hal/clock.ts', 'hal/errors.ts'],
  ['hal/storage', 'hal/crypto', 'hal/net'],
  ['hal/hsm'],
  ['firmware/secrets.ts'],
  ['firmware/log.ts'],
  ['firmware/pii'],
  // #35: smtp-server's DATA reader with a native search, installed by the listener above it.
  ['firmware/smtp-data-scan.ts'],
  [
    'firmware/events.ts',
    'firmware/errors.ts',
    'firmware/box-errors.ts',
    'firmware/client-errors.ts',
    'firmware/memory-budget.ts',
    'firmware/component.ts',
    'firmware/runtime.ts',
    'firmware/notify.ts',
    'firmware/faults.ts',
    'firmware/percentiles.ts',
    'firmware/smtp-listener.ts',
  ],
  ['firmware/config'],
  ['firmware/mime'],
  ['firmware/pipeline'],
  ['firmware/keys'],
  ['firmware/audit', 'firmware/spool'],
  ['firmware/policy', 'firmware/signing', 'firmware/submission', 'firmware/return-path'],
  ['firmware/delivery'],
  ['firmware/ledger'],
  // #34: the stages a mail goes through before the 250, and the one file that orders them.
  ['firmware/pipeline/stages'],
  ['firmware/pipeline/chain.ts'],
  ['firmware/control', 'firmware/update'],
  ['firmware/admin'],
  ['firmware/daemon.ts'],
  // The composition root: every component built and wired, in start order; main and the tests share it.
  ['firmware/box.ts'],
  ['firmware/main.ts'],
]

/** The group a source file belongs to: the longest group of LAYERS that holds it, else its folder (or itself at the top). */
export function groupOf(file: string): string {
  const named = LAYERS.flat()
    .filter((g) => file === g || file.startsWith(`${g}/`))
    .sort((a, b) => b.length - a.length)[0]
  if (named) return named
  const parts = file.split('/')
  return parts.length > 2 ? parts.slice(0, 2).join('/') : file
}

/** The TypeScript files below `dirs` (paths from `root`, sorted); read from the tree, so no git is needed. */
export function sourceFiles(root: string, dirs: readonly string[]): string[] {
  return dirs
    .flatMap((d) => readdirSync(join(root, d), { recursive: true, encoding: 'utf8' }).map((f) => join(d, f)))
    .filter((f) => f.endsWith('.ts'))
    .sort()
}

/** Every import (static, dynamic, type-only, re-export) of the firmware's and hal's source files, as written. */
export function importsOf(root: string): Map<string, string[]> {
  const files = sourceFiles(root, ['firmware', 'hal'])
  return new Map(files.map((file) => [file, ts.preProcessFile(readFileSync(join(root, file), 'utf8'), true, true).importedFiles.map((i) => i.fileName)]))
}

/** The relative imports as paths from the root: the graph the layer and cycle checks read. */
export function importGraph(root: string): Map<string, string[]> {
  const graph = new Map<string, string[]>()
  for (const [file, specs] of importsOf(root)) {
    graph.set(
      file,
      specs.filter((n) => n.startsWith('.')).map((n) => normalize(join(dirname(file), n))),
    )
  }
  return graph
}

/** Imports that point up or sideways in the layers, or out of firmware/hal (to provisioning, test, bench). */
export function layerViolations(graph: Map<string, string[]>): string[] {
  const rank = new Map<string, number>()
  LAYERS.forEach((groups, i) => groups.forEach((g) => rank.set(g, i)))
  const out: string[] = []
  for (const [file, deps] of graph) {
    const from = groupOf(file)
    const r = rank.get(from)
    if (r === undefined) out.push(`${file}: its group ${from} is in no layer (add it to LAYERS)`)
    for (const dep of deps) {
      const to = groupOf(dep)
      if (to === from) continue
      const d = rank.get(to)
      if (!graph.has(dep)) out.push(`${file} imports ${dep}, outside firmware/ and hal/ (or missing)`)
      else if (r !== undefined && d !== undefined && d >= r) out.push(`${file} imports ${dep}: ${to} is ${d === r ? 'a peer of' : 'above'} ${from}`)
    }
  }
  return out
}

/** Circles of imports between files (strongly connected components of more than one file, or a file importing itself). */
export function importCycles(graph: Map<string, string[]>): string[][] {
  // Tarjan's algorithm, iterative (no recursion depth limit on a long chain).
  let counter = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const onStack = new Set<string>()
  const stack: string[] = []
  const cycles: string[][] = []
  for (const start of graph.keys()) {
    if (index.has(start)) continue
    const work: { node: string; next: number }[] = [{ node: start, next: 0 }]
    index.set(start, counter)
    low.set(start, counter++)
    stack.push(start)
    onStack.add(start)
    while (work.length) {
      const top = work.at(-1)!
      const deps = (graph.get(top.node) ?? []).filter((d) => graph.has(d))
      if (top.next < deps.length) {
        const dep = deps[top.next++]!
        if (!index.has(dep)) {
          index.set(dep, counter)
          low.set(dep, counter++)
          stack.push(dep)
          onStack.add(dep)
          work.push({ node: dep, next: 0 })
        } else if (onStack.has(dep)) {
          low.set(top.node, Math.min(low.get(top.node)!, index.get(dep)!))
        }
        continue
      }
      work.pop()
      const parent = work.at(-1)
      if (parent) low.set(parent.node, Math.min(low.get(parent.node)!, low.get(top.node)!))
      if (low.get(top.node) === index.get(top.node)) {
        const component: string[] = []
        let n: string
        do {
          n = stack.pop()!
          onStack.delete(n)
          component.push(n)
        } while (n !== top.node)
        if (component.length > 1 || (graph.get(top.node) ?? []).includes(top.node)) cycles.push(component.sort())
      }
    }
  }
  return cycles
}
