// Drives the real `@segment/analytics-node` against Spillway: `cfg.count` calls of every
// message type, then closeAndFlush. Prints {statuses, errors, ok, failed}.
import { Analytics } from '@segment/analytics-node'
import { cfg, recordingFetch, report, errors, describe } from './common.mjs'

const analytics = new Analytics({
  writeKey: cfg.key,
  host: cfg.host,
  flushAt: cfg.flushAt ?? 15,
  flushInterval: 200,
  maxRetries: cfg.maxRetries ?? 10,
  httpClient: recordingFetch,
})
analytics.on('error', (e) => errors.push(describe(e)))

let ok = 0
let failed = 0
const done = []
const calls = ['track', 'track', 'identify', 'page', 'screen', 'group', 'alias', 'track']
for (let i = 0; i < cfg.count; i++) {
  const call = calls[i % calls.length]
  const common = {
    userId: `user-${i % 5}`,
    // A fixed messageId makes a second run a resend of the same messages.
    ...(cfg.messageIds ? { messageId: `${cfg.run}-msg-${i}` } : {}),
    timestamp: new Date(Date.now() - (cfg.count - i) * 1000),
  }
  const props = { run: cfg.run, i, pad: 'x'.repeat(100) }
  const params = {
    track: { ...common, event: 'E2E Order Completed', properties: props },
    identify: { ...common, traits: props },
    page: { ...common, name: 'Pricing', properties: props },
    screen: { ...common, name: 'Home', properties: props },
    group: { ...common, groupId: `group-${i}`, traits: props },
    alias: { ...common, previousId: `anon-${i}`, context: { traits: props } },
  }[call]
  done.push(
    new Promise((resolve) =>
      analytics[call](params, (err) => {
        if (err) failed++
        else ok++
        resolve()
      }),
    ),
  )
}
await analytics.closeAndFlush({ timeout: cfg.timeoutMs ?? 120000 })
await Promise.race([Promise.all(done), new Promise((r) => setTimeout(r, 1000))])
report({ ok, failed })
