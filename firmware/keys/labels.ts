/**
 * Every HSM object label the box uses, in one place (M6, S9): the manifest
 * creates the box's own keys from these, and each user names its key through
 * them, so a label can never drift between the writer and the reader.
 */

/** Signs audit trail checkpoints (S6). */
export const CHECKPOINT_KEY_LABEL = 'audit/checkpoint-signing'
/** Keyed hashes of recipient addresses in the audit trail (S6). */
export const RECIPIENT_HMAC_LABEL = 'audit/recipient-hmac'
/** HMAC over each configuration version, checked at every start (S7, S9). */
export const CONFIG_VERSION_LABEL = 'config/version-mac'
/** Pepper for admin password hashes (S3). */
export const PASSWORD_PEPPER_LABEL = 'admin/password-pepper'
/** Derives the secret each webhook endpoint's requests are signed with (M9). */
export const WEBHOOK_SIGNING_LABEL = 'reports/webhook-signing'
/** Derives the key that seals open and click tokens (M9). */
export const TRACKING_KEY_LABEL = 'reports/tracking'
/** Derives the keys of the return-path tokens: the VERP envelope sender and the read-receipt address (M8, M11). */
export const RETURN_PATH_KEY_LABEL = 'bounces/return-path'

/** The S/MIME key and certificate first boot makes for a box that has not been given the firm's own. */
export const DEV_SMIME_LABEL = 'smime/dev'

const EPOCH_PREFIX = 'spool/epoch/'
/** The key that wraps the data keys of one spool epoch; destroying it shreds the epoch (M10). */
export const epochKeyLabel = (epoch: string) => `${EPOCH_PREFIX}${epoch}`
/** The epoch an epoch key label names, or undefined for any other label. */
export const epochOfLabel = (label: string) => (label.startsWith(EPOCH_PREFIX) ? label.slice(EPOCH_PREFIX.length) : undefined)

/** A signing domain's DKIM key for one selector (M5). */
export const dkimKeyLabel = (domain: string, selector: string) => `dkim/${domain}/${selector}`
