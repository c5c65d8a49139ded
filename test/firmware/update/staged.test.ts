import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { Slots } from '../../../firmware/update/slots.ts'
import { APPROVED_UPDATE, installApproved } from '../../../firmware/update/staged.ts'
import { tempDir } from '../../helpers/box.ts'
import { craftBundle, vendorKey } from '../../helpers/bundles.ts'

t.test('an approved update names an upload in the updates directory, or root reads and removes nothing', async (t) => {
  const dir = tempDir(t, 'sg-staged-')
  const k = vendorKey()
  const slots = new Slots(join(dir, 'opt'))
  slots.init(craftBundle(dir, 'v1.sgfw', k.priv, { version: '1.0.0' }), [k.pub])
  const dataDir = join(dir, 'data')
  mkdirSync(join(dataDir, 'updates'), { recursive: true })
  const victim = join(dir, 'victim')
  writeFileSync(victim, 'a file root must not delete')
  const approve = (file: string, uploadedBy = 'wang') =>
    writeFileSync(join(dataDir, 'updates', APPROVED_UPDATE), JSON.stringify({ file, sha256: 'x', uploadedBy, approvedBy: 'mei', version: '2.0.0' }))

  approve(victim)
  t.throws(() => installApproved(dataDir, slots), /does not name an upload of this box/)
  t.ok(existsSync(victim), 'a path elsewhere: not removed')
  approve(join(dataDir, 'updates', '..', '..', 'victim'))
  t.throws(() => installApproved(dataDir, slots), /does not name an upload of this box/)
  t.ok(existsSync(victim))
  t.equal(installApproved(dataDir, slots), undefined, 'the approval is gone: nothing to do')

  const upload = join(dataDir, 'updates', 'upload-0123456789ab.sgfw')
  craftBundle(join(dataDir, 'updates'), 'upload-0123456789ab.sgfw', k.priv, { version: '2.0.0' })
  approve(upload, 'mei')
  t.throws(() => installApproved(dataDir, slots), /not approved by a second administrator/)
  t.notOk(existsSync(upload), 'a refused upload is removed')
  t.match(slots.state().lastUpdate, { outcome: 'refused' })
})
