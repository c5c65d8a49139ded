import { createInterface } from 'node:readline/promises'
import { stdin, stdout } from 'node:process'
import { parseArgs } from 'node:util'
import { systemClock } from '../hal/clock.ts'
import { hashPassword } from '../hal/crypto/password.ts'
import { AccountError, Accounts } from '../firmware/admin/accounts.ts'
import { CONSOLE_ACCOUNT_COMMANDS, consoleAccountAction } from '../firmware/admin/console.ts'
import { operatorLogin, recordAdminAction } from '../firmware/control/admin-record.ts'
import { PASSWORD_PEPPER_LABEL } from '../firmware/keys/labels.ts'
import { boxRunning, controlRequests, controlSocketPath } from '../firmware/control/server.ts'
import type { BoxEvent } from '../firmware/events.ts'
import { failer, toolConfig } from './cli.ts'
import { withToolHsm } from './tool-hsm.ts'

const USAGE = `usage: npm run account -- <command> [--config FILE]

  hash
      Reads a submission password on stdin, prints its scrypt hash for
      submission.accounts[].passwordHash (the password is never on a command line).
  enrol NAME [--role admin|operator|auditor]
      The second administrator when only one exists (#31): a one-time enrolment
      code for the person, who sets their own password and authenticator at
      /welcome. Being at the box (root) is the second person. Default role admin.
  unlock NAME [--code CODE]
      A locked admin-page account, with a code from its own authenticator (asked
      for when not given).
  unlock NAME --re-enrol --reason TEXT
      A locked account whose person lost their authenticator: unlocked, its
      password and authenticator reset, and a one-time code to set both again.

Every action is in the audit trail: through the running box, or written there
directly when the box is stopped.
`

const { values, positionals } = parseArgs({
  args: process.argv.slice(2),
  options: {
    config: { type: 'string' },
    role: { type: 'string' },
    code: { type: 'string' },
    're-enrol': { type: 'boolean' },
    reason: { type: 'string' },
    help: { type: 'boolean' },
  },
  allowPositionals: true,
})
const fail: (message: string, code?: number) => never = failer('account')
const [command, name] = positionals

async function readStdin(): Promise<string> {
  let text = ''
  for await (const chunk of stdin) text += chunk
  return text.replace(/\r?\n$/, '')
}

if (values.help || !command) {
  process.stderr.write(USAGE)
  process.exit(values.help ? 0 : 2)
}

if (command === 'hash') {
  const password = await readStdin()
  if (password.length < 12) fail('a submission password needs at least 12 characters')
  process.stdout.write(`${await hashPassword(password)}\n`)
  process.exit(0)
}

if (command !== 'enrol' && command !== 'unlock') {
  process.stderr.write(USAGE)
  process.exit(2)
}
if (!name) fail(`${command} needs an account name`, 2)
const config = toolConfig('account', values.config)
const cmd: (typeof CONSOLE_ACCOUNT_COMMANDS)[number] = command === 'enrol' ? 'account.enrol' : values['re-enrol'] ? 'account.re-enrol' : 'account.unlock'
let code = values.code
if (cmd === 'account.unlock' && !code) {
  const rl = createInterface({ input: stdin, output: stdout })
  code = (await rl.question(`A current code from ${name}'s authenticator: `)).trim()
  rl.close()
}
const args = { name, role: values.role ?? 'admin', code: code ?? '', reason: values.reason ?? '' }
const who = operatorLogin()

let result: { code?: string; text: string }
if (await boxRunning(config)) {
  // The running box owns the accounts: it does it, and records it.
  const [reply] = await controlRequests(controlSocketPath(config), [{ cmd, args, who }])
  if (!reply) fail('no reply from the box')
  if (!reply.ok) fail(reply.error.replace(/^failed: /, ''))
  result = reply.result as { code?: string; text: string }
} else {
  result = await withToolHsm(config, fail, async (hsm) => {
    // The accounts' keys are made at the box's first start: before it, there is nothing to act on.
    if (!(await hsm.keys.exists(PASSWORD_PEPPER_LABEL, 'secret')))
      fail('this box has not started yet (its keys are made at the first start): start it, then enrol the first administrator with the setup code')
    const events: BoxEvent[] = []
    const accounts = new Accounts({ dataDir: config.dataDir, hsm, clock: systemClock, events: { emit: (e) => void events.push(e) } })
    try {
      return await consoleAccountAction(accounts, cmd, args, who)
    } catch (err) {
      if (err instanceof AccountError) fail(err.message)
      throw err
    } finally {
      // Everything the accounts recorded goes to the trail (the box is stopped: the tool writes it).
      for (const e of events)
        if (e.type === 'admin.action')
          await recordAdminAction(config, hsm, systemClock, { action: e.action, target: e.target, outcome: e.outcome, reason: e.reason, detail: e.detail })
    }
  })
}
process.stdout.write(`${result.text}\n${result.code ? `one-time code: ${result.code}\n` : ''}`)
