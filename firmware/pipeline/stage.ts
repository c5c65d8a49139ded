import type { Handoff, Submitted } from './handoff.ts'

/**
 * A step a mail goes through inside the submission transaction, before the
 * 250 reply (policy, signing…). A stage returns the mail as the next stage
 * should see it, or throws a GatewayError that becomes the SMTP reply.
 */
export interface Stage {
  readonly name: string
  process(mail: Submitted): Promise<Submitted>
}

/** Runs the stages in order, then hands the result on; the client gets 250 only after all of it. */
export class StagedHandoff implements Handoff {
  readonly #stages: readonly Stage[]
  readonly #next: Handoff

  constructor(stages: readonly Stage[], next: Handoff) {
    this.#stages = stages
    this.#next = next
  }

  async accept(mail: Submitted): Promise<void> {
    let current = mail
    for (const stage of this.#stages) current = await stage.process(current)
    await this.#next.accept(current)
  }
}
