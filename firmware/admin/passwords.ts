/**
 * The password rule of admin-page accounts (S3 asks at least 6 characters of
 * letters, digits and symbols; the box asks 12, and none that a guesser tries
 * first). The list of bases is short because the length and character rules
 * already shut out nearly all of the published most-common lists; what is left
 * of those lists is a common word or a keyboard run dressed up with digits and
 * symbols (`P@ssw0rd2026!`), which is what is caught here, after undoing the
 * usual letter-for-symbol swaps.
 */
export const MIN_LENGTH = 12

const COMMON_BASES = [
  'password',
  'passwd',
  'qwerty',
  'qwertyuiop',
  'asdfgh',
  'asdfghjkl',
  'zxcvbn',
  'abc123',
  'abcdef',
  'admin',
  'administrator',
  'welcome',
  'letmein',
  'iloveyou',
  'changeme',
  'secret',
  'master',
  'dragon',
  'monkey',
  'sunshine',
  'princess',
  'football',
  'baseball',
  'superman',
  'trustno1',
  'login',
  'root',
  'default',
  'test',
  'user',
  'guest',
  'statement',
  'gateway',
  'bank',
  'taiwan',
  'taipei',
]

const LEET: Record<string, string> = { '@': 'a', '4': 'a', '3': 'e', '1': 'i', '!': 'i', '0': 'o', $: 's', '5': 's', '7': 't', '+': 't' }

/** The letters a password is made of, digits and symbols dropped; with `leet`, the usual swaps undone first. */
function letters(password: string, leet: boolean): string {
  let out = ''
  for (const ch of password.toLowerCase()) {
    const c = leet ? (LEET[ch] ?? ch) : ch
    if (/\p{L}/u.test(c)) out += c
  }
  return out
}

/** Made of common words only (`statementgateway`), or one with a few letters around it, or one letter repeated. */
function common(b: string): boolean {
  if (b.length < 4 || [...b].every((c) => c === b[0])) return true
  if (COMMON_BASES.some((w) => (b.startsWith(w) || b.endsWith(w)) && b.length - w.length < 4)) return true
  // Whether b splits into common words: reach[i] says b[0, i) does.
  const reach = [true, ...Array<boolean>(b.length).fill(false)]
  for (let i = 0; i < b.length; i++) if (reach[i]) for (const w of COMMON_BASES) if (b.startsWith(w, i)) reach[i + w.length] = true
  return reach[b.length]!
}

/** Undefined when the password may be used; otherwise the reason, in words for the person choosing it. */
export function passwordProblem(password: string, userName: string): string | undefined {
  const chars = [...password]
  if (chars.length < MIN_LENGTH) return `at least ${MIN_LENGTH} characters`
  if (chars.length > 256) return 'at most 256 characters'
  if (!chars.some((c) => /\p{L}/u.test(c))) return 'needs a letter'
  if (!chars.some((c) => /\p{Nd}/u.test(c))) return 'needs a digit'
  if (!chars.some((c) => !/[\p{L}\p{Nd}\s]/u.test(c))) return 'needs a symbol'
  const name = letters(userName, false)
  const plain = letters(password, false)
  const swapped = letters(password, true)
  if (name.length >= 3 && (plain.includes(name) || swapped.includes(name))) return 'must not contain the account name'
  if (common(plain) || common(swapped)) return 'is too close to a commonly used password'
  return undefined
}
