// Drives the real `@rudderstack/rudder-sdk-node` against Spillway: RudderStack's server SDK
// speaks Segment's protocol (`/v1/batch`, the write key as the Basic user, gzip bodies by
// default), pointed at Spillway by its `dataPlaneUrl` alone. `cfg.count` calls of every
// message type, then flush. Prints {ok, failed, errors}.
import Analytics from '@rudderstack/rudder-sdk-node'
import { cfg, describe } from './common.mjs'

const errors = []
const client = new Analytics(cfg.key, {
  dataPlaneUrl: cfg.host,
  flushAt: cfg.flushAt ?? 15,
  flushInterval: 200,
  retryCount: cfg.maxRetries ?? 10,
  logLevel: 'error',
  errorHandler: (e) => errors.push(describe(e)),
})

let ok = 0
let failed = 0
const done = []
const calls = ['track', 'identify', 'page', 'screen', 'group', 'alias', 'track']
for (let i = 0; i < cfg.count; i++) {
  const call = calls[i % calls.length]
  const common = { userId: `user-${i % 5}`, timestamp: new Date(Date.now() - (cfg.count - i) * 1000) }
  const props = { run: cfg.run, i }
  const params = {
    track: { ...common, event: 'E2E Rudder Order', properties: props },
    identify: { ...common, traits: props },
    page: { ...common, name: 'Pricing', properties: props },
    screen: { ...common, name: 'Home', properties: props },
    group: { ...common, groupId: `group-${i}`, traits: props },
    alias: { ...common, previousId: `anon-${i}`, context: { traits: props } },
  }[call]
  done.push(
    new Promise((resolve) =>
      client[call](params, (err) => {
        if (err) {
          failed++
          errors.push(describe(err))
        } else ok++
        resolve()
      }),
    ),
  )
}
await new Promise((resolve) => client.flush(() => resolve()))
await Promise.all(done)
process.stdout.write(JSON.stringify({ ok, failed, errors }) + '\n')
