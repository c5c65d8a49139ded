import { stdin } from 'node:process'
import { hashPassword } from '../hal/crypto/password.ts'

/**
 * Submission account helper for IT.
 *
 *   npm run account -- hash      reads a password on stdin, prints its scrypt hash
 *
 * The password never appears on a command line (where `ps` and shell history
 * would see it); put the printed hash in `submission.accounts[].passwordHash`.
 */
async function readStdin(): Promise<string> {
  let text = ''
  for await (const chunk of stdin) text += chunk
  return text.replace(/\r?\n$/, '')
}

const [command] = process.argv.slice(2)
if (command !== 'hash') {
  process.stderr.write('usage: npm run account -- hash   (password on stdin)\n')
  process.exit(2)
}
const password = await readStdin()
if (password.length < 12) {
  process.stderr.write('account: a submission password needs at least 12 characters\n')
  process.exit(1)
}
process.stdout.write(`${await hashPassword(password)}\n`)
