import { Type } from 'typebox'

/**
 * What the admin page's routes accept in their path and query string (#34), as route schemas:
 * fastify checks them before a handler runs, and they type `req.params` and `req.query` in place
 * of casts. Every value is one string: a key given twice (`?statement=a&statement=b`) is a 400,
 * not an array a handler takes for a string. What each value means (a month, a queue id) the
 * handler still judges, with its own message.
 */
const text = Type.String({ maxLength: 1000 })
const optional = Type.Optional(text)

export const IdParams = Type.Object({ id: text })
export const IdActionParams = Type.Object({ id: text, action: text })
export const NameActionParams = Type.Object({ name: text, action: text })

export const MonthQuery = Type.Object({ month: optional })
export const RangeQuery = Type.Object({ from: optional, to: optional })
export const QueueQuery = Type.Object({ state: optional, page: optional, statement: optional, recipient: optional })
export const AuditQuery = Type.Object({ id: optional, statement: optional, recipient: optional, type: optional, from: optional, to: optional })
export const AccountQuery = Type.Object({ expired: optional })
/** The dashboard's charts: the last hour or the last day. */
export const SeriesQuery = Type.Object({ span: Type.Optional(Type.Union([Type.Literal('hour'), Type.Literal('day')])) })
