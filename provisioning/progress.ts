/**
 * A progress bar on standard error for long work (exports, rebuilds), drawn
 * only when standard error is a terminal and at most ten times a second; a
 * pipe or a log file gets the one closing line instead.
 */
export class Progress {
  readonly shown: boolean
  total = 0
  readonly #what: string
  readonly #unit: string
  readonly #started = Date.now()
  readonly #out: NodeJS.WriteStream
  #drawn = 0

  constructor(what: string, unit: string, out: NodeJS.WriteStream = process.stderr) {
    this.#what = what
    this.#unit = unit
    this.#out = out
    this.shown = out.isTTY === true
  }

  update(n: number): void {
    if (!this.shown) return
    const now = Date.now()
    if (now - this.#drawn < 100) return
    this.#drawn = now
    this.#out.write(`\r${this.line(n, now)}\x1b[K`)
  }

  done(n: number): void {
    if (this.shown) this.#out.write(`\r${this.line(n, Date.now())}\x1b[K\n`)
  }

  /** `export  [##########----------]  50%  500,000 / 1,000,000 rows  2.1 s` (no bar without a total). */
  line(n: number, now: number): string {
    const seconds = `${((now - this.#started) / 1000).toFixed(1)} s`
    const count = n.toLocaleString('en')
    if (this.total <= 0) return `${this.#what}  ${count} ${this.#unit}  ${seconds}`
    const share = Math.min(1, n / this.total)
    const filled = Math.round(share * 20)
    const bar = `[${'#'.repeat(filled)}${'-'.repeat(20 - filled)}]`
    return `${this.#what}  ${bar} ${String(Math.floor(share * 100)).padStart(3)}%  ${count} / ${this.total.toLocaleString('en')} ${this.#unit}  ${seconds}`
  }
}
