const DOT = Buffer.from('.')
const CRLF_DOT = Buffer.from('\r\n.')
const END = Buffer.from('.\r\n')
const CRLF_END = Buffer.from('\r\n.\r\n')

/**
 * RFC 5321 §4.5.2: a line starting with "." gets another; the message ends with CRLF.CRLF.
 * The pieces to write, in order: slices of `message` itself and the few bytes added (#35:
 * it was turned into a string, rewritten and turned back, three copies of every mail).
 */
export function dotStuff(message: Buffer): Buffer[] {
  const out: Buffer[] = []
  if (message[0] === 0x2e) out.push(DOT)
  let from = 0
  for (let i = message.indexOf(CRLF_DOT); i !== -1; i = message.indexOf(CRLF_DOT, i + 2)) {
    out.push(message.subarray(from, i + 2), DOT)
    from = i + 2
  }
  if (from < message.length) out.push(message.subarray(from))
  const crlf = message.length >= 2 && message[message.length - 2] === 0x0d && message[message.length - 1] === 0x0a
  out.push(crlf ? END : CRLF_END)
  return out
}
