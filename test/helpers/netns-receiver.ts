import { SMTPServer } from 'smtp-server'

/**
 * A receiving MX for tests that run in a network namespace (started there with
 * `ip netns exec`): prints one JSON line per mail with the address it came from.
 *   node test/helpers/netns-receiver.ts HOST PORT
 */
const [host = '0.0.0.0', port = '25'] = process.argv.slice(2)
const server = new SMTPServer({
  authOptional: true,
  disabledCommands: ['STARTTLS'],
  disableReverseLookup: true,
  logger: false,
  onData(stream, session, cb) {
    let size = 0
    stream.on('data', (d: Buffer) => (size += d.length))
    stream.on('end', () => {
      process.stdout.write(
        `${JSON.stringify({ from: session.remoteAddress, mailFrom: session.envelope.mailFrom && session.envelope.mailFrom.address, rcptTo: session.envelope.rcptTo.map((r) => r.address), size })}\n`,
      )
      cb()
    })
  },
})
server.listen(Number(port), host, () => process.stdout.write('listening\n'))
