import { join } from 'node:path'
import type { Clock } from '../../hal/clock.ts'
import { Hsm, HsmError, type HsmOptions, type HsmStatus } from '../../hal/hsm/index.ts'
import type { Component } from '../component.ts'
import type { Config } from '../config/load.ts'
import type { EventSink, ProbeSummary } from '../events.ts'
import type { Logger } from '../log.ts'
import { MECHANISMS_OF, probe, type GcmLayout, type Need, type ProbeReport } from '../../hal/hsm/probe.ts'
import type { KeyPairType, SecretKeyType } from '../../hal/hsm/index.ts'
import { ConfigError } from '../config/types.ts'
import { BOX_KEYS } from './manifest.ts'

/** The S/MIME keys the configuration signs with: their certificates are watched for expiry and shown by status. */
export function signingCertificateLabels(config: Config): string[] {
  const s = config.signing
  return [...new Set([...s.domains.map((d) => d.smimeKey), ...s.senders.map((x) => x.smimeKey)].filter((l): l is string => Boolean(l)))]
}

const SMIME_MECHANISM = { 'rsa-pkcs1-sha256': 'CKM_SHA256_RSA_PKCS', 'rsa-pss-sha256': 'CKM_SHA256_RSA_PKCS_PSS', 'ecdsa-p256-sha256': 'CKM_ECDSA' } as const

/**
 * #38: what the configuration asks of the token, each with the config key that asks: the box's own
 * keys (spool, audit, tokens), each domain's DKIM keys (RSA-2048; Ed25519 where a selector asks for
 * it, RFC 8463) and its S/MIME signature algorithm.
 */
export function tokenNeeds(config: Config): { types: (KeyPairType | SecretKeyType)[]; needs: Need[] } {
  const types: (KeyPairType | SecretKeyType)[] = [...BOX_KEYS.map((k) => k.type), 'aes-256']
  const needs: Need[] = types.flatMap((t) => MECHANISMS_OF[t].map((mechanism) => ({ key: 'hsm', mechanism })))
  const need = (key: string, type: KeyPairType) => {
    types.push(type)
    needs.push(...MECHANISMS_OF[type].map((mechanism) => ({ key, mechanism })))
  }
  for (const [i, d] of config.signing.domains.entries()) {
    const at = `signing.domains[${i}]`
    if (d.dkimSelector) need(`${at}.dkimSelector`, 'rsa-2048')
    if (d.dkimEd25519Selector) need(`${at}.dkimEd25519Selector`, 'ed25519')
    if (d.smimeKey) needs.push({ key: `${at}.smimeAlgorithm`, mechanism: SMIME_MECHANISM[d.smimeAlgorithm] })
  }
  return { types: [...new Set(types)], needs }
}

/**
 * Why the box will not run on a token with this configuration (#38), or undefined: a need the token lacks, with its
 * config key and the mechanism named; or a token that hands out a key marked non-extractable (C_WrapKey under a
 * key the box made), refused outright (M6).
 */
export function probeRefusal(report: ProbeReport): ConfigError | undefined {
  if (report.missing.length)
    return new ConfigError(
      report.missing[0]!.key,
      `the HSM token lacks ${report.missing.map((m) => `${m.mechanism} (${m.key})`).join(', ')}; change the configuration or use a token that has it`,
    )
  // The spool's epoch keys need AES-GCM in a parameter layout the token reads (hal/hsm/keys.ts): the 2.40 one, or
  // the draft one where only that is read right (gcmLayoutOf). A token that reads neither would fail the first
  // submission's spool write; it is told now, with what the token answered.
  if (report.gcm && !gcmLayoutOf(report))
    return new ConfigError(
      'hsm.module',
      `the HSM token reads AES-GCM parameters in neither layout for the spool's keys ` +
        `(PKCS#11 2.40: ${report.gcm['pkcs11-2.40']}; the older draft layout: ${report.gcm.draft})`,
    )
  if (report.extractable.length)
    return new ConfigError(
      'hsm.module',
      `the HSM token wrapped out keys the box marks non-extractable (${report.extractable.join(', ')}: C_WrapKey under a key the box ` +
        'made); M6 needs keys that never leave the token — use a token that enforces CKA_EXTRACTABLE (SoftHSM2 does; so should a vendor HSM)',
    )
  return undefined
}

/** The probe report in the shape of the audit record and the HSM card. */
export function probeSummary(report: ProbeReport, refusal: Error | undefined): ProbeSummary {
  return {
    token: report.token.label,
    manufacturer: report.token.manufacturer,
    model: report.token.model,
    firmware: report.token.firmware,
    absent: Object.keys(report.mechanisms).filter((m) => report.mechanisms[m] === 'absent'),
    keys: report.keys,
    wrap: report.wrap,
    ...(report.gcm ? { gcm: report.gcm } : {}),
    missing: report.missing.map((m) => `${m.key}: ${m.mechanism}`),
    refused: refusal?.message,
  }
}

/**
 * The AES-GCM parameter layout to use with this token (#38): PKCS#11 2.40's when the probe's known answer came back
 * right in it (or the token makes no AES key to try), else the draft one when that came back right, else none.
 */
export function gcmLayoutOf(report: ProbeReport): GcmLayout | undefined {
  if (!report.gcm || report.gcm['pkcs11-2.40'] === 'ok') return 'pkcs11-2.40'
  return report.gcm.draft === 'ok' ? 'draft' : undefined
}

/**
 * Runs the probe for `config`; throws probeRefusal's error when the box will not run on the token, and otherwise
 * sets the GCM layout the spool's keys are used with.
 */
export async function probeFor(hsm: Hsm, config: Config, record?: (s: ProbeSummary) => void): Promise<ProbeReport> {
  const { types, needs } = tokenNeeds(config)
  const report = await probe(hsm.token, hsm.keys, types, needs)
  const refusal = probeRefusal(report)
  record?.(probeSummary(report, refusal))
  if (refusal) throw refusal
  hsm.keys.gcmLayout = gcmLayoutOf(report)!
  return report
}

/** `quirks` is for tests only (#38): a vendor module's behaviour reproduced around the real one. */
export function hsmFromConfig(config: Config, clock: Clock, quirks: Pick<HsmOptions, 'quirks' | 'threadQuirks'> = {}): Hsm {
  const h = config.hsm
  return new Hsm({
    ...quirks,
    module: h.module,
    moduleParameters: h.moduleParameters,
    tokenLabel: h.tokenLabel,
    pinFile: h.pinFile,
    sessions: h.sessions,
    reconnectIntervalMs: h.reconnectIntervalMs,
    devDir: join(config.dataDir, 'hsm'),
    clock,
  })
}

/**
 * The HSM as a daemon component: opens the token, creates the box's keys if
 * missing, and checks the token every `hsm.healthCheckMs`, logging each change
 * of state (S11). A token that is absent at start is not fatal (the box
 * reconnects when it appears; until then anything needing a key tempfails); a
 * wrong PIN or a PIN file others can read is.
 */
export class KeyService implements Component {
  readonly name = 'hsm'
  readonly hsm: Hsm
  readonly #config: Config
  readonly #log: Logger
  readonly #events: EventSink
  #timer: NodeJS.Timeout | undefined
  #lastState: string | undefined
  readonly #clock: Clock
  /** The capability probe made at start (#38), for status and the HSM card. */
  probe: ProbeReport | undefined
  /** Per certificate label: the UTC day it was last warned about (one warning a day). */
  readonly #warned = new Map<string, string>()

  constructor(deps: { config: Config; log: Logger; clock: Clock; events: EventSink; quirks?: Pick<HsmOptions, 'quirks' | 'threadQuirks'> }) {
    this.#config = deps.config
    this.#events = deps.events
    this.#log = deps.log.child({ component: 'hsm' })
    this.hsm = hsmFromConfig(deps.config, deps.clock, deps.quirks)
    this.#clock = deps.clock
  }

  get certificateLabels(): string[] {
    return signingCertificateLabels(this.#config)
  }

  async start(): Promise<void> {
    // A signing call that finds the token gone (or a reconnect that finds it back) is reported
    // now, not at the next health check (S11).
    // Not while start() itself probes and makes the keys (#38: the probe's throw-away keys and the box's are made one after the other).
    this.hsm.token.onStateChange = () => void (this.#started && this.check())
    try {
      await this.hsm.open()
      // #38: what the configuration needs of the token, asked before anything relies on it.
      this.probe = await probeFor(this.hsm, this.#config, this.#recordProbe)
      this.#log.info(
        { token: this.probe.token, keys: this.probe.keys, wrap: this.probe.wrap, gcmLayout: this.hsm.keys.gcmLayout },
        'HSM probe: the token has what the configuration needs',
      )
      const { sessionsOpen } = this.hsm.token
      // #38: a module that caps its sessions is used with what it gives; the setting above the cap is a warning, not a failed start.
      if (sessionsOpen < this.#config.hsm.sessions)
        this.#log.warn(
          { configured: this.#config.hsm.sessions, open: sessionsOpen },
          'the HSM module gives fewer sessions than hsm.sessions; using the ones it gives',
        )
      if (this.hsm.createdToken)
        this.#log.info({ dir: join(this.#config.dataDir, 'hsm') }, 'created the embedded SoftHSM2 token with a random PIN (file mode 0600)')
      await this.#ensureKeys()
    } catch (err) {
      if (err instanceof HsmError && err.transient) this.#log.error({ code: err.code, err: err.message }, 'HSM unavailable at start; will keep trying')
      else throw err
    }
    this.#started = true
    // The box's keys are made as soon as the token answers, also when it did not at start.
    if (!this.#keysEnsured) await this.#ensureKeys().catch(() => undefined)
    await this.check()
    this.#timer = setInterval(() => void this.check(), this.#config.hsm.healthCheckMs)
    this.#timer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer)
    await this.hsm.close()
  }

  #last: HsmStatus | undefined
  #probeSummary: ProbeSummary | undefined

  /** #38: the last probe's findings (the HSM card), also when they refused the token. */
  get probeSummary(): ProbeSummary | undefined {
    return this.#probeSummary
  }

  /** #38: every probe is in the audit trail, a refused one too. */
  readonly #recordProbe = (s: ProbeSummary): void => {
    this.#probeSummary = s
    this.#events.emit({ type: 'hsm.probe', ...s })
  }

  /** The last check's result (every `hsm.healthCheckMs`), without asking the token again. */
  get last(): HsmStatus | undefined {
    return this.#last
  }

  #keysEnsured = false
  #started = false
  #probeFailed = false
  #ensuring: Promise<void> | undefined

  /** One at a time: two callers that both find a key missing would each make one under the same label. */
  #ensureKeys(): Promise<void> {
    this.#ensuring ??= this.hsm
      .ensureKeys(BOX_KEYS)
      .then((created) => {
        this.#keysEnsured = true
        if (created.length) this.#log.info({ created }, 'generated keys in the HSM')
      })
      .finally(() => (this.#ensuring = undefined))
    return this.#ensuring
  }

  /** Checks the token (reconnecting if due) and logs when its state changes. */
  async check(): Promise<HsmStatus> {
    if (!this.#keysEnsured) await this.#ensureKeys().catch(() => undefined)
    const status = await this.hsm.status(BOX_KEYS, this.certificateLabels)
    this.#last = status
    // A token that was away at start is probed when it answers (#38); what it lacks then is an error to fix, told at once.
    if (!this.probe && !this.#probeFailed && !status.error)
      this.probe = await probeFor(this.hsm, this.#config, this.#recordProbe).catch((err: Error) => {
        this.#probeFailed = true
        this.#log.error({ err: err.message }, 'HSM probe: the token lacks what the configuration needs')
        return undefined
      })
    this.#warnExpiring(status)
    const missing = status.keys.filter((k) => !k.present).map((k) => k.label)
    const state = status.error ? 'unavailable' : missing.length ? 'keys-missing' : 'ok'
    if (state !== this.#lastState) {
      const fields = { state, token: status.token, error: status.error, missing }
      if (state === 'ok') this.#log.info(fields, 'HSM ready')
      else this.#log.error(fields, 'HSM not ready')
      this.#events.emit({ type: 'hsm.status', state, token: status.token?.label, error: status.error, missing })
      this.#lastState = state
    }
    return status
  }

  /**
   * A signing certificate close to its end is announced every day in the log
   * and the audit trail: once it expires every statement from that domain is
   * refused (ESIGN_CERT_EXPIRED), so the firm must renew it in time.
   */
  #warnExpiring(status: HsmStatus): void {
    const today = new Date(this.#clock.now()).toISOString().slice(0, 10)
    for (const c of status.certificates) {
      if (c.daysLeft > this.#config.hsm.certificateWarnDays || this.#warned.get(c.label) === today) continue
      this.#warned.set(c.label, today)
      const fields = { label: c.label, subject: c.subject.replace(/\n/g, ', '), serial: c.serial, notAfter: c.notAfter, daysLeft: c.daysLeft }
      if (c.daysLeft < 0) this.#log.error(fields, 'signing certificate has expired: statements signed with it are refused until a new one is imported')
      else this.#log.warn(fields, 'signing certificate expires soon: request and import a new one')
      this.#events.emit({ type: 'hsm.certificate_expiring', label: c.label, serial: c.serial, notAfter: c.notAfter, daysLeft: c.daysLeft })
    }
  }
}
