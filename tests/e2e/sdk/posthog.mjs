// Drives the real `posthog-node` against Spillway: `cfg.count` captures (with the occasional
// identify), then shutdown; with `cfg.historical`, as a historical import of events
// `cfg.ageDays` old. Prints {statuses, errors}.
import { PostHog } from 'posthog-node'
import { cfg, recordingFetch, report, errors, describe } from './common.mjs'

const client = new PostHog(cfg.key, {
  host: cfg.host,
  flushAt: cfg.flushAt ?? 20,
  flushInterval: 200,
  disableCompression: !cfg.gzip,
  fetchRetryCount: cfg.retries ?? 3,
  fetchRetryDelay: cfg.retryDelayMs ?? 3000,
  fetch: recordingFetch,
  // A historical import: batches marked `historical_migration: true`.
  historicalMigration: !!cfg.historical,
})
client.on('error', (e) => errors.push(describe(e)))

// A v4-shaped UUID from the run and the index, so a second run resends the same events.
function uuidFor(i) {
  const hex = Buffer.from(`${cfg.run}`.padEnd(8, '0').slice(0, 8)).toString('hex').slice(0, 12)
  const n = i.toString(16).padStart(12, '0')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12).padEnd(4, '0')}-4000-8000-${n}`
}

for (let i = 0; i < cfg.count; i++) {
  const properties = { run: cfg.run, i, pad: 'x'.repeat(100) }
  const uuid = cfg.uuids ? { uuid: uuidFor(i) } : {}
  const distinctId = `user-${i % 5}`
  // `ageDays` back: an import's events are older than the live window.
  const timestamp = new Date(Date.now() - (cfg.ageDays ?? 0) * 86400000 - (cfg.count - i) * 1000)
  if (i % 10 === 3) {
    client.capture({ distinctId, event: '$identify', properties: { ...properties, $set: { plan: 'pro' } }, timestamp, ...uuid })
  } else {
    client.capture({ distinctId, event: 'e2e order completed', properties, timestamp, ...uuid })
  }
}
await client.shutdown(cfg.timeoutMs ?? 120000)
report({})
