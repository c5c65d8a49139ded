import { parentPort, workerData } from 'node:worker_threads'
import { pkcs11, type PKCS11 } from './pkcs11.ts'
import type { OffThreadJob, OffThreadReply, ThreadQuirks } from './off-thread.ts'

/**
 * A thread that runs a token operation whole (#33): `C_*Init` and the
 * operation it starts, one after the other, synchronously — here, not on the
 * main thread. pkcs11js has asynchronous forms of the operations but not of
 * their `Init`, and a token's `Init` can wait (SoftHSM loads and decrypts the
 * key in it, and takes a lock another thread holds while it signs); on the
 * main thread that wait held up everything else, a receiver's 250 included.
 *
 * The module is the one the main thread loaded (the same library in this
 * process: its sessions, login and object handles are the application's, not
 * a thread's, PKCS#11 §5.5). This thread neither initialises nor finalises it.
 */
const given = workerData as { module: string; quirks?: ThreadQuirks }
let p = new pkcs11.PKCS11()
// Loaded for its function list only. It is never initialised here: the main thread initialises
// and finalises the module, and a job only comes with a session of its live connection. (A
// thread that initialised it as it started could do so after the token closed, and leave it
// initialised under the next one: CKR_CRYPTOKI_ALREADY_INITIALIZED.)
p.load(given.module)
// Test only (#38): a vendor's behaviour reproduced on this thread's calls (off-thread.ts, ThreadQuirks).
if (given.quirks) p = ((await import(given.quirks.module)) as { threadQuirk: (m: PKCS11, data: unknown) => PKCS11 }).threadQuirk(p, given.quirks.data)

/** Buffers arrive as Uint8Arrays (structured clone): pkcs11js wants Buffers. */
const buf = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength)

function mechanism(m: OffThreadJob['mechanism']): Parameters<typeof p.C_SignInit>[1] {
  if (!m.parameter) return { mechanism: m.mechanism }
  const parameter: Record<string, unknown> = { ...m.parameter }
  for (const k of ['iv', 'aad'] as const) if (parameter[k] instanceof Uint8Array) parameter[k] = buf(parameter[k])
  return { mechanism: m.mechanism, parameter } as never
}

parentPort!.on('message', (job: OffThreadJob) => {
  let reply: OffThreadReply
  try {
    const session = buf(job.session)
    const key = buf(job.key)
    const input = buf(job.input)
    const out = Buffer.alloc(job.outLength)
    let result: Buffer
    // Single-part only (#38): AWS CloudHSM has no multi-part signing or hashing, so no *Update/*Final here or anywhere.
    switch (job.op) {
      case 'sign':
        p.C_SignInit(session, mechanism(job.mechanism), key)
        result = p.C_Sign(session, input, out)
        break
      case 'encrypt':
        p.C_EncryptInit(session, mechanism(job.mechanism), key)
        result = p.C_Encrypt(session, input, out)
        break
      case 'decrypt':
        p.C_DecryptInit(session, mechanism(job.mechanism), key)
        result = p.C_Decrypt(session, input, out)
        break
    }
    reply = { id: job.id, ok: new Uint8Array(result.buffer, result.byteOffset, result.byteLength) }
  } catch (err) {
    const e = err as Error
    reply = { id: job.id, error: { name: e.name, message: e.message } }
  }
  parentPort!.postMessage(reply)
})
