import { createServer, type Server } from 'node:net'
import { rmSync } from 'node:fs'
import t from 'tap'
import { parseConfig } from '../../firmware/config/load.ts'
import { LISTENER_TYPES } from '../../firmware/config/sections/fields.ts'
import { schema } from '../../firmware/config/schema.ts'
import { kindOf, shapeOf, typeNameOf, type Field } from '../../firmware/config/types.ts'
import { Box } from './box.ts'
import { listenersOnPortZero, routeTo } from './mx.ts'

/** #33: the reliability suite's box never collides with another box on this machine. */

/** Every key of the schema that is a listener (by its type), with its value in `config`. */
function listeners(config: Record<string, unknown>): [string, unknown][] {
  const out: [string, unknown][] = []
  const walk = (shape: Record<string, Field<unknown>>, into: Record<string, unknown>, prefix: string) => {
    for (const [k, f] of Object.entries(shape)) {
      if (kindOf(f) === 'object') walk(shapeOf(f)!, (into[k] ?? {}) as Record<string, unknown>, `${prefix}${k}.`)
      else if ((LISTENER_TYPES as readonly string[]).includes(typeNameOf(f))) out.push([`${prefix}${k}`, into[k]])
    }
  }
  walk(shapeOf(schema)!, config, '')
  return out
}

t.test('the suite config builder puts every listener the schema knows on port 0', async (t) => {
  const raw: Record<string, unknown> = { dataDir: '/tmp/x' }
  routeTo(2526)(raw)
  const config = parseConfig(raw) as unknown as Record<string, unknown>
  const found = listeners(config)
  t.ok(found.length >= 5, `listeners in the schema: ${found.map(([k]) => k).join(', ')}`)
  for (const [key, value] of found) t.ok(value === 0 || String(value).endsWith(':0'), `${key} = ${String(value)}`)
  t.same(listenersOnPortZero({}).sort(), found.map(([k]) => k).sort(), 'the builder sets exactly those')
})

t.test('a suite box starts while the default return-path and admin ports are taken', async (t) => {
  const taken: Server[] = []
  for (const port of [2525, 8443, 2587, 2465, 8080]) {
    const s = createServer()
    const ok = await new Promise<boolean>((resolve) => {
      s.once('error', () => resolve(false))
      s.listen(port, '127.0.0.1', () => resolve(true))
    })
    if (ok) taken.push(s)
  }
  t.teardown(() => taken.forEach((s) => s.close()))
  const box = await Box.create(routeTo(1))
  t.teardown(() => rmSync(box.dataDir, { recursive: true, force: true }))
  await box.start()
  t.teardown(() => box.kill('SIGKILL'))
  t.ok(box.alive, 'the box is up')
  t.ok(
    Object.values(box.ports).every((p) => p && ![2525, 8443, 2587, 2465, 8080].includes(p)),
    `on free ports: ${JSON.stringify(box.ports)}`,
  )
  t.equal(await box.kill('SIGTERM'), 0)
})
