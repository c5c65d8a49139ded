/** What a report that came back says (report.ts reads it; notice.ts reads the free-text kind). */
export type ReportKind = 'dsn' | 'mdn' | 'feedback' | 'auto-reply' | 'unknown'

export type Action = 'failed' | 'delayed' | 'delivered' | 'relayed' | 'expanded'

export interface RecipientResult {
  /** The recipient as the report names it ('' when it names none). */
  address: string
  action: Action
  /** RFC 3463 code as given ('' when none). */
  status: string
  /** The SMTP reply code in the diagnostic ('' when none). */
  reply: string
  /** The receiver's words about this recipient (Diagnostic-Code, or the notice's sentence), at most 1000 characters. */
  diagnostic: string
  remoteMta: string
  /** The SMTP command the failure answered (`rcpt`, `data`, …) when the report says, else ''. */
  command: string
  /** The type of the DSN's Diagnostic-Code (`smtp`; `x-unix` for a local delivery program's exit), when it has one. */
  diagnosticType?: string
}

export interface Disposition {
  /** RFC 8098 3.2.6.2: displayed, deleted, dispatched, processed (and the obsolete denied, failed). */
  type: string
  /** automatic-action or manual-action. */
  action: 'automatic' | 'manual'
}

export interface Report {
  kind: ReportKind
  recipients: RecipientResult[]
  disposition?: Disposition
  feedbackType?: string
  /** The Message-ID of the message reported on (returned headers, or the MDN's Original-Message-ID), without brackets. */
  originalMessageId: string
  /** Who the report came from and its subject, for the audit record. */
  from: string
  subject: string
}

/** The most of a receiver's words kept per recipient. */
export const DIAGNOSTIC_LIMIT = 1000
/** More recipients than one statement has; the box sends each recipient its own transaction anyway. */
export const MAX_RECIPIENTS = 100
/** Mailboxes of mail systems, never a statement's recipient. */
export const SYSTEM_LOCALS = new Set(['mailer-daemon', 'postmaster', 'mailerdaemon', 'mail-daemon', 'root', 'abuse', 'noreply', 'no-reply', 'daemon', 'nobody'])

/** What the spool did with a read (#30): ended the statement, found it already gone, or does not count this evidence. */
export type ReadVerdict = 'ended' | 'final' | 'not-evidence'
/** What the spool did with a bounce: ended the statement, lets its wait decide, or found it already gone. */
export type BounceVerdict = 'ended' | 'awaiting' | 'final'

/** A bounce the firm is told of (M8): what the receiver said, and the box's reading of it. */
export interface BounceNotice {
  id: string
  recipient: number
  /** The address the report names (the recipient's, unmasked: the notice goes to the firm). */
  address: string
  /** The receiver's RFC 3463 status for this recipient. */
  status: string
  action: 'failed'
  /** The receiver's words with its codes, redacted (pii/redact.ts). */
  diagnostic: string
  category: string
  hard: boolean
}
