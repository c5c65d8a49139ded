import { bool, obj, oneOf, records, str } from '../types.ts'

/** Signing (M4, M5): S/MIME and DKIM per sender domain. */
export const signing = obj({
  domains: records(
    {
      domain: str({ default: '', nonEmpty: true, pattern: /^[a-z0-9.-]+$/, description: 'Sender domain (lower case).' }),
      smimeKey: str({ default: '', description: 'HSM label of the S/MIME key and certificate for this domain; empty for none.' }),
      smimeRequired: bool({ default: true, description: 'Refuse mail that cannot be S/MIME-signed.' }),
      smimeAlgorithm: oneOf(['rsa-pkcs1-sha256', 'rsa-pss-sha256', 'ecdsa-p256-sha256'] as const, {
        default: 'rsa-pkcs1-sha256',
        description: 'Signature algorithm.',
      }),
      dkimSelector: str({ default: '', pattern: /^$|^[A-Za-z0-9._-]+$/, description: 'DKIM selector; empty for no DKIM.' }),
      dkimEd25519Selector: str({
        default: '',
        pattern: /^$|^[A-Za-z0-9._-]+$/,
        description: 'Selector of an additional ed25519-sha256 DKIM signature (RFC 8463); empty for none.',
      }),
    },
    {
      default: [],
      required: ['domain'],
      description:
        'Signing per sender domain (M4, M5): `{ "domain", "smimeKey", "smimeRequired": true, "smimeAlgorithm": "rsa-pkcs1-sha256" | "rsa-pss-sha256" ' +
        '| "ecdsa-p256-sha256", "dkimSelector" }`. The S/MIME key and certificate are in the HSM under `smimeKey` (`npm run hsm -- csr` / ' +
        '`import-cert` / `import-p12`); the DKIM key is created in the HSM as `dkim/<domain>/<selector>` at start (`npm run dkim -- dns` prints the ' +
        'record).',
    },
  ),
  senders: records(
    {
      address: str({ default: '', nonEmpty: true, description: 'Sender address (lower case).' }),
      smimeKey: str({ default: '', nonEmpty: true, description: "HSM label of this sender's S/MIME key and certificate." }),
    },
    {
      default: [],
      required: ['address', 'smimeKey'],
      description: 'Per-address S/MIME certificates, used before the domain\'s: `{ "address", "smimeKey" }`.',
    },
  ),
  encryptTo: records(
    {
      address: str({ default: '', nonEmpty: true, description: 'Recipient address (lower case).' }),
      certFile: str({ default: '', nonEmpty: true, description: 'PEM certificate of the recipient.' }),
    },
    {
      default: [],
      required: ['address', 'certFile'],
      description: 'Optional S/MIME encryption (M5): recipients with a certificate get the signed mail encrypted to them: `{ "address", "certFile" }`.',
    },
  ),
  encryptionCipher: oneOf(['aes-256-cbc', 'aes-256-gcm'] as const, {
    default: 'aes-256-cbc',
    description: 'Content cipher for S/MIME encryption: AES-256-CBC (EnvelopedData, widest client support) or AES-256-GCM (AuthEnvelopedData, RFC 5083).',
  }),
})
