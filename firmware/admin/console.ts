import { AccountError, ROLES, type Accounts, type Role } from './accounts.ts'

/**
 * What root at the box's console may do to the admin accounts (#31), through
 * the running box's control socket or, with the box stopped, on its files:
 * being at the box is the second person.
 *
 * - `account.enrol` NAME ROLE: the second administrator when only one exists
 *   (a one-time enrolment code, as the first had its setup code);
 * - `account.unlock` NAME CODE: a locked account, with a code from its own
 *   authenticator;
 * - `account.re-enrol` NAME REASON: a locked account whose person lost their
 *   authenticator: unlocked, its password and MFA reset, a one-time code.
 */
export async function consoleAccountAction(
  accounts: Accounts,
  cmd: string,
  args: Record<string, unknown>,
  who: string,
): Promise<{ code?: string; text: string }> {
  const text = (k: string) => {
    const v = args[k]
    return typeof v === 'string' ? v.trim() : ''
  }
  const name = text('name')
  if (!name) throw new AccountError('an account name is needed')
  switch (cmd) {
    case 'account.enrol': {
      const role = (text('role') || 'admin') as Role
      if (!ROLES.includes(role)) throw new AccountError(`no such role: ${role} (${ROLES.join(', ')})`)
      const code = await accounts.consoleEnrol(name, role, who)
      return { code, text: `account ${name} (${role}) made; the person sets their password with this one-time code at /welcome, within 24 hours` }
    }
    case 'account.unlock':
      await accounts.consoleUnlock(name, text('code'), who)
      return { text: `${name} unlocked` }
    case 'account.re-enrol': {
      const reason = text('reason')
      if (!reason) throw new AccountError('say why (how the person was identified): --reason')
      const code = await accounts.consoleReEnrol(name, who, reason)
      return { code, text: `${name} unlocked, its password and authenticator reset; the person sets both with this one-time code at /welcome, within 24 hours` }
    }
    default:
      throw new AccountError(`unknown account command ${cmd}`)
  }
}

export const CONSOLE_ACCOUNT_COMMANDS = ['account.enrol', 'account.unlock', 'account.re-enrol'] as const
