import { systemClock } from '../hal/clock.ts'
import { HsmError, type Hsm } from '../hal/hsm/index.ts'
import type { Config } from '../firmware/config/load.ts'
import { hsmFromConfig } from '../firmware/keys/service.ts'

/**
 * Runs `fn` on the box's HSM, opened for it and closed after. An HSM error
 * (token away, wrong PIN, key missing) ends the tool through `fail` with its
 * message; anything else is a bug and propagates.
 */
export async function withToolHsm<T>(config: Config, fail: (message: string) => never, fn: (hsm: Hsm) => Promise<T>): Promise<T> {
  const hsm = hsmFromConfig(config, systemClock)
  try {
    await hsm.open()
    return await fn(hsm)
  } catch (err) {
    if (err instanceof HsmError) fail(err.message)
    throw err
  } finally {
    await hsm.close()
  }
}
