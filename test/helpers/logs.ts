import { Writable } from 'node:stream'
import { createLogger, type Logger } from '../../firmware/log.ts'

/** A logger whose records are parsed back into objects (STYLE: pino's sink()). */
export function logSink(level = 'debug'): { log: Logger; records: Record<string, unknown>[]; text: () => string } {
  const records: Record<string, unknown>[] = []
  const lines: string[] = []
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue
        lines.push(line)
        records.push(JSON.parse(line) as Record<string, unknown>)
      }
      cb()
    },
  })
  return { log: createLogger(level, stream), records, text: () => lines.join('\n') }
}
