import { patternProblem } from '../patterns.ts'
import { bool, int, list, obj, records, str } from '../types.ts'
import { mode } from './fields.ts'

/** Statement rules (M9, S2, S4, S5): profiles, checks and their modes, consent lists, inspection workers. */
export const policy = obj({
  consentCheckSeconds: int({
    default: 30,
    min: 1,
    max: 3600,
    description: 'How often the consent files are checked for a new version (M1: the firm exports them).',
  }),
  inspectionWorkers: int({
    default: 2,
    min: 1,
    max: 64,
    description: 'Worker threads that read and judge submitted mail off the event loop (one per core on the appliance).',
  }),
  inspectionBudgetMs: int({
    default: 10000,
    min: 100,
    max: 600000,
    description:
      "Longest a mail's inspection may take; past it the worker is stopped and the mail answered 451 4.3.0 ETEMPORARY (never accepted unchecked), " +
      'with an event and a counter.',
  }),
  profiles: records(
    {
      name: str({ default: '', nonEmpty: true, description: 'Profile name (in replies and the audit trail).' }),
      accounts: list(str({ default: '', description: '' }), { default: [], description: 'Submission accounts this profile applies to.' }),
      domains: list(str({ default: '', description: '' }), { default: [], description: 'Sender domains this profile applies to.' }),
      senderAlignment: mode('enforce', 'MAIL FROM and the From mailbox must be allowed senders (`allowedSenders`, else `domains`): EPOLICY_SENDER.'),
      allowedSenders: list(str({ default: '', description: '' }), {
        default: [],
        description: 'Domains or addresses MAIL FROM and From may use; empty means `domains`.',
      }),
      subjectLabel: mode('enforce', 'A statement of a class in `labelClasses` must carry `label` in its subject: EPOLICY_SUBJECT.'),
      statementClass: str({ default: '', description: 'Class assumed when a mail has no X-Statement-Class header.' }),
      labelClasses: list(str({ default: '', description: '' }), { default: ['monthly'], description: 'Classes whose subject must carry `label`.' }),
      label: str({ default: '有價證券月對帳單', description: 'Required subject label (M12).' }),
      pdfEncryption: mode(
        'enforce',
        'Every PDF attachment (by type, name or content) must be encrypted: EPOLICY_PDF_UNENCRYPTED, or EPOLICY_PDF_UNREADABLE when it cannot be read.',
      ),
      requirePdf: bool({ default: false, description: 'Refuse a statement without a PDF attachment.' }),
      attachmentTypes: list(str({ default: '', description: '' }), {
        default: ['application/pdf', 'application/zip'],
        description: 'Allowed attachment types; empty allows any.',
      }),
      zipEncryption: mode(
        'enforce',
        'Every ZIP entry must be encrypted, and the archive read alike by every reader: EPOLICY_ZIP_UNENCRYPTED, EPOLICY_ZIP_MALFORMED.',
      ),
      deidentify: mode(
        'enforce',
        'No unmasked Taiwan national ID or resident certificate number (checksum-valid) and nothing matching `patterns` anywhere a person could ' +
          'read: EPOLICY_UNMASKED_ID.',
      ),
      patterns: list(str({ default: '', description: '', check: patternProblem }), {
        default: [],
        description:
          'Extra regular expressions that must not appear (full account numbers…), matched against every text a person could read in the mail. They ' +
          'run on a linear-time engine: no backreferences, lookaround, `i` or `u` flags; write `[Aa]` for a letter in either case.',
      }),
      maxRecipients: int({ default: 1, min: 1, max: 1000, description: 'Recipients per mail (statements are 1:1).' }),
      tracking: bool({
        default: false,
        description:
          'M9: rewrite links in HTML parts to count clicks and add a 1×1 image to count opens (`reports.tracking`), before signing. Off by ' +
          'default; mails with several recipients are never rewritten.',
      }),
      consentFile: str({
        default: '',
        description:
          'File of addresses with e-statement consent (one per line, or CSV first column); empty for no check. The box rereads it when it changes ' +
          '(after it has stopped changing for `policy.consentCheckSeconds`); an empty or unreadable new file keeps the previous list.',
      }),
    },
    {
      default: [],
      required: ['name'],
      description:
        'Statement policy profiles (M1, M12, M13), chosen by submission account, then by sender domain; a mail matching none is not checked. Rule ' +
        'modes: `enforce` refuses with a 5xx naming the rule, `monitor` accepts and records the hit, `off`. Keys: `name, accounts, domains, ' +
        'senderAlignment, allowedSenders, subjectLabel, statementClass, labelClasses, label, pdfEncryption, requirePdf, attachmentTypes, ' +
        'zipEncryption, deidentify, patterns, maxRecipients, tracking, consentFile`.',
    },
  ),
})
