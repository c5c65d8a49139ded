import { readdirSync, readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { devHsm } from '../../helpers/hsm.ts'

/**
 * #33: the token threads (hal/hsm/off-thread.ts) never leave the module initialised behind
 * the token that started them. The first job starts the whole pool; the threads it did not
 * need finish starting in the background, after this token may have closed. A thread that
 * called C_Initialize as it started then left SoftHSM initialised, and the next token in the
 * process failed with CKR_CRYPTOKI_ALREADY_INITIALIZED (seen in the audit rotation test).
 * Its own file: the pool is the process's, and it must not exist before this test.
 */
t.test('a token closed while its threads are still starting: the next token in the process opens and signs', async (t) => {
  const first = await devHsm(t, { sessions: 16 })
  await first.hsm.keys.generateKeyPair('k', 'rsa-2048')
  await first.hsm.keys.sign('k', 'rsa-pkcs1-sha256', Buffer.from('starts sixteen threads, uses one'))
  await first.hsm.close()
  for (let i = 0; i < 5; i++) {
    await sleep(100) // the other fifteen threads finish starting meanwhile
    const next = await devHsm(t, { sessions: 2 })
    await next.hsm.keys.generateKeyPair('k', 'rsa-2048')
    t.equal((await next.hsm.keys.sign('k', 'rsa-pkcs1-sha256', Buffer.from(`after ${i}`))).length, 256, `token ${i + 2} opens and signs`)
    await next.hsm.close()
  }
})

t.test('#38: every operation is single-part (AWS CloudHSM has no C_*Update or C_*Final; C_FindObjectsFinal ends a search, not an operation)', async (t) => {
  const dir = new URL('../../../hal/hsm/', import.meta.url)
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'))
  t.ok(files.includes('init-worker.ts') && files.includes('keys.ts'), 'the files that run operations are read')
  for (const f of files) t.same(readFileSync(new URL(f, dir), 'utf8').match(/\bC_(?!FindObjects)\w+(Update|Final)\b/g) ?? [], [], `${f}: no multi-part call`)
})
