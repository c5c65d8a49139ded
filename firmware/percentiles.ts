/** The last `size` samples and their percentiles (for status and the reliability suite). */
export class Percentiles {
  readonly #values: Float64Array
  #n = 0

  constructor(size: number) {
    this.#values = new Float64Array(size)
  }

  add(v: number): void {
    this.#values[this.#n++ % this.#values.length] = v
  }

  /** The samples kept, in no particular order. */
  values(): number[] {
    return Array.from(this.#values.subarray(0, Math.min(this.#n, this.#values.length)))
  }

  summary(): { samples: number; p50: number; p99: number; max: number } {
    const filled = Math.min(this.#n, this.#values.length)
    if (filled === 0) return { samples: 0, p50: 0, p99: 0, max: 0 }
    const sorted = Array.from(this.#values.subarray(0, filled)).sort((a, b) => a - b)
    const at = (q: number) => Math.round(sorted[Math.min(filled - 1, Math.floor(q * filled))]! * 10) / 10
    return { samples: this.#n, p50: at(0.5), p99: at(0.99), max: Math.round(sorted[filled - 1]! * 10) / 10 }
  }
}
