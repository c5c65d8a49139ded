import type { KeyObject } from 'node:crypto'
import type { TlsOptions } from 'node:tls'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type {
  FastifyBaseLogger,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify'
import type { Clock } from '../../hal/clock.ts'
import type { Config } from '../config/load.ts'
import type { ControlReply, ControlRequest } from '../control/server.ts'
import type { EventSink } from '../events.ts'
import type { Logger } from '../log.ts'
import type { LedgerStore } from '../ledger/store.ts'
import type { Apply, Proposals } from '../config/proposals.ts'
import type { ConfigVersions } from '../config/versions.ts'
import type { FirmwareView } from '../update/agent.ts'
import type { Accounts, Role } from './accounts.ts'
import type { Html } from './html.ts'
import type { BoxMetrics } from './metrics.ts'
import type { Viewer } from './pages.ts'
import type { Sessions } from './sessions.ts'
import type { SystemInfo } from './system.ts'

/** The admin page's parts, as the route modules see them. */
export interface RecordDeps {
  /** The statement ledger's store, when the ledger runs. */
  ledger: () => LedgerStore | undefined
  /** The audit trail's checkpoint public key, from the HSM. */
  checkpointKey: () => Promise<KeyObject>
  /** The TLS certificate the box's listeners present (PEM). */
  tlsCertificate: () => string
}

/** What the admin page is built on; each is one of the box's own components, never a second implementation. */
export interface AdminDeps {
  config: Config
  log: Logger
  events: EventSink
  clock: Clock
  accounts: Accounts
  metrics: BoxMetrics
  /** The box's queue and status service (the control socket's). */
  control: {
    request(req: ControlRequest & { who: string }, via: 'admin-page'): Promise<ControlReply>
    /** The status for the /metrics scrape, not audited (S11). */
    statusForMonitoring(): Promise<Record<string, unknown>>
  }
  tls: () => TlsOptions
  /** The audit trail's directory, for search. */
  auditDir: string
  recipientHash: (address: string) => Promise<string>
  system: SystemInfo
  records: RecordDeps
  /** ETSI 5.3: the firmware running, the other slot's, and the last update's outcome with its reason. */
  firmware: () => FirmwareView
  /** The vendor keys (SPKI PEM) an uploaded bundle must be signed by. */
  firmwareKeys: () => string[]
  /**
   * Configuration under change control (S7): the versions, the proposals, how a change is applied to the
   * running box, an encrypted backup for the second site (S12), and a graceful restart for the keys that
   * apply at a start (offered when a service manager will start the box again).
   */
  changeControl: {
    versions: ConfigVersions
    proposals: Proposals
    apply: Apply
    backup: (passphrase: string) => Promise<{ file: string; bundle: Buffer; detail: string }>
    restart: { supervised: boolean; run: (who: string, reason: string) => void }
  }
}

/** The admin page's fastify instance: route schemas are TypeBox's, and type the handlers' `req.params`, `req.query` and `req.body` (#34). */
export type AdminApp = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, TypeBoxTypeProvider>

export interface Routes {
  app: AdminApp
  deps: AdminDeps
  sessions: Sessions
  loginLimit: { max: number; timeWindow: number }
  page: (reply: FastifyReply, h: Html) => FastifyReply
  viewer: (req: FastifyRequest, reply: FastifyReply) => Viewer | undefined
  need: (roles: readonly Role[]) => (req: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined>
  metricsAllowed: (req: FastifyRequest) => boolean
  /** #31: how many account changes wait for a second administrator. */
  openAccountProposals: () => number
}
