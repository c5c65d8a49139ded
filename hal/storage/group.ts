/**
 * Group commit: one run of an expensive operation (an fdatasync, a directory
 * fsync) for everyone who asked while the previous run was going. Callers
 * arriving during a run join the next one, so under load many share one sync
 * and none waits for more than two. A failed run fails exactly the callers in
 * it; the next callers get a fresh run.
 */
export class GroupCommit<T> {
  readonly #run: (items: T[]) => Promise<void>
  readonly #gather: boolean
  #pending: { item: T; resolve: () => void; reject: (err: Error) => void }[] = []
  #running: Promise<void> | undefined

  /** `gather`: before each run, let callers that are ready in this turn of the event loop join it. */
  constructor(run: (items: T[]) => Promise<void>, options: { gather?: boolean } = {}) {
    this.#run = run
    this.#gather = options.gather ?? false
  }

  /** Resolves when a run that includes `item` has finished. */
  add(item: T): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ item, resolve, reject })
      this.#running ??= this.#loop()
    })
  }

  /** Resolves when nothing is waiting or running. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running
  }

  async #loop(): Promise<void> {
    try {
      while (this.#pending.length) {
        if (this.#gather) await new Promise<void>((r) => setImmediate(r))
        const batch = this.#pending
        this.#pending = []
        try {
          await this.#run(batch.map((b) => b.item))
          for (const b of batch) b.resolve()
        } catch (err) {
          for (const b of batch) b.reject(err as Error)
        }
      }
    } finally {
      // No await between the last look at the queue and this: a caller that arrives
      // from here on finds no run and starts one.
      this.#running = undefined
    }
  }
}
