import type { RequiredKey } from '../../hal/hsm/index.ts'
import {
  CHECKPOINT_KEY_LABEL,
  CONFIG_VERSION_LABEL,
  PASSWORD_PEPPER_LABEL,
  RECIPIENT_HMAC_LABEL,
  RETURN_PATH_KEY_LABEL,
  TRACKING_KEY_LABEL,
  WEBHOOK_SIGNING_LABEL,
} from './labels.ts'

/**
 * Keys the box itself needs, created in the HSM at first start (M6, S9).
 * Spool wrapping keys (one per epoch) belong to the spool, DKIM keys to the
 * signing domains in config, S/MIME keys to the firm's certificates.
 */
export const BOX_KEYS: readonly RequiredKey[] = [
  { label: CHECKPOINT_KEY_LABEL, type: 'ec-p256', purpose: 'signs audit trail checkpoints (S6)' },
  { label: RECIPIENT_HMAC_LABEL, type: 'hmac-sha256', purpose: 'keyed hashes of recipient addresses in the audit trail (S6)' },
  { label: PASSWORD_PEPPER_LABEL, type: 'hmac-sha256', purpose: 'pepper for admin password hashes (S3)' },
  { label: CONFIG_VERSION_LABEL, type: 'hmac-sha256', purpose: 'HMAC over each configuration version, checked at every start (S7, S9)' },
  { label: WEBHOOK_SIGNING_LABEL, type: 'hmac-sha256', purpose: 'derives the secret each webhook endpoint of the firm verifies requests with (M9)' },
  { label: TRACKING_KEY_LABEL, type: 'hmac-sha256', purpose: 'derives the key that seals open and click tokens (M9)' },
  { label: RETURN_PATH_KEY_LABEL, type: 'hmac-sha256', purpose: 'derives the keys of the return-path tokens in VERP and read-receipt addresses (M8, M11)' },
]
