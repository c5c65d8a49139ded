import { execFileSync } from 'node:child_process'
import t from 'tap'
import { applyTbf, showQdisc } from '../../../hal/net/tc.ts'

t.test('M3: tc-tbf at the budget on an egress device, in a network namespace the test makes', async (t) => {
  const ns = `sgtc${process.pid}`
  execFileSync('ip', ['netns', 'add', ns])
  t.teardown(() => execFileSync('ip', ['netns', 'del', ns]))
  execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'add', 'eg0', 'type', 'veth', 'peer', 'name', 'eg1'])
  await applyTbf('eg0', 10_000_000, { netns: ns })
  t.match(await showQdisc('eg0', { netns: ns }), /qdisc tbf \S+ root .*rate 10Mbit burst 16Kb lat 50ms/)
  await applyTbf('eg0', 100_000_000, { netns: ns })
  t.match(await showQdisc('eg0', { netns: ns }), /rate 100Mbit burst 125000b/, 'replaced, with a 1 % burst')
  await t.rejects(applyTbf('eg0; reboot', 1, { netns: ns }), /not a network device name/)
})
