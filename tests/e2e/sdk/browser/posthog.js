// The page of the posthog-js run: the real SDK from node_modules (bundled by esbuild), pointed
// at Spillway by `api_host` alone. `window.__cfg` (written by browser.mjs) says the run token,
// the key and which body encoding this load uses. Every event the SDK sends is recorded (its
// `uuid`) in localStorage before it leaves, so the driver can read them after the page unloads.
import posthog from 'posthog-js'
import { record } from './record.js'

const cfg = window.__cfg
posthog.init(cfg.key, {
  api_host: cfg.host,
  // What the test covers: page views, custom events, identify, the unload beacon. The rest of
  // the SDK would call routes Spillway does not serve (flags, remote config, recordings).
  advanced_disable_decide: true,
  advanced_disable_flags: true,
  disable_external_dependency_loading: true,
  disable_session_recording: true,
  disable_surveys: true,
  autocapture: false,
  capture_dead_clicks: false,
  capture_heatmaps: false,
  capture_performance: false,
  capture_exceptions: false,
  capture_pageview: true,
  capture_pageleave: true,
  // Each load is a new visitor: nothing of the previous load's identity is kept.
  persistence: 'memory',
  // posthog-js drops every event of a user agent it takes for a bot, headless Chromium's
  // included; a real visitor's browser is none.
  opt_out_useragent_filter: true,
  before_send: (event) => {
    if (event) record(event.uuid, event.event)
    return event
  },
  // The SDK's encodings: gzip-js by default; base64 forms when its remote config says the
  // project supports only that (`supportedCompression`, set here as that answer would);
  // plain JSON with `disable_compression`.
  disable_compression: !cfg.compression,
  loaded: (ph) => {
    if (cfg.compression) ph.compression = cfg.compression
    // Before the initial page view, so every event of the load carries the run.
    ph.register({ run: cfg.run, variant: cfg.variant })
  },
})
posthog.identify(`user-${cfg.variant}`, { plan: 'pro', run: cfg.run })
for (let i = 0; i < cfg.count; i++) {
  posthog.capture('e2e browser order', { i, total: 12.5 })
}
window.__ready = true
// Events left in the SDK's queue when the page goes away: sent by the unload beacon, with
// the `$pageleave` the SDK captures then.
window.__more = () => {
  for (let i = 0; i < cfg.more; i++) posthog.capture('e2e browser before unload', { i })
}
