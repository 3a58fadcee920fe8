// The page of the @segment/analytics-next run: the real SDK from node_modules (bundled by
// esbuild), with the settings Segment's CDN would serve given inline (`cdnSettings`) and its
// `Segment.io` destination pointed at Spillway (`apiHost`, `protocol`). `window.__cfg` says the
// run, the key and the delivery strategy: `standard` (one request per call, /v1/t, /v1/p, ...,
// keepalive) or `batching` (/v1/b, flushed when the page is hidden). Every message's
// `messageId` is recorded in localStorage before it leaves.
import { AnalyticsBrowser } from '@segment/analytics-next'
import { record } from './record.js'

const cfg = window.__cfg
const apiHost = `${cfg.host.replace(/^https?:\/\//, '')}/v1`
const deliveryStrategy =
  cfg.strategy === 'batching'
    ? { strategy: 'batching', config: { size: 1000, timeout: 600000 } }
    : { strategy: 'standard', config: { keepalive: true } }
const segmentio = { apiKey: cfg.key, apiHost, protocol: 'http', deliveryStrategy }

const analytics = AnalyticsBrowser.load(
  {
    writeKey: cfg.key,
    // `metrics`: the SDK's own telemetry to `<apiHost>/m`, which is no event and which Spillway
    // does not serve, is off (sample rate 0).
    cdnSettings: {
      integrations: { 'Segment.io': segmentio },
      remotePlugins: [],
      metrics: { sampleRate: 0 },
    },
  },
  { integrations: { 'Segment.io': segmentio } },
)
analytics.addSourceMiddleware(({ payload, next }) => {
  record(payload.obj.messageId, payload.obj.type)
  next(payload)
})

const props = { run: cfg.run, strategy: cfg.strategy }
// Standard delivery answers each call once it is sent; a batching call waits for its batch,
// which only the page's unload sends here, so those calls are not awaited.
const settle = cfg.strategy === 'batching' ? () => {} : (p) => p
async function main() {
  await settle(analytics.page('Docs', 'Pricing', props))
  await settle(analytics.identify(`user-${cfg.strategy}`, { ...props, plan: 'pro' }))
  for (let i = 0; i < cfg.count; i++) {
    await settle(analytics.track('E2E Browser Order', { ...props, i, total: 12.5 }))
  }
  window.__ready = true
}
window.__more = () => {
  for (let i = 0; i < cfg.more; i++) analytics.track('E2E Before Unload', { ...props, i })
}
main().catch((e) => {
  window.__error = String(e)
})
