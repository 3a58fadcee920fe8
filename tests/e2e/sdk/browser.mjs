// Drives a browser SDK in headless Debian chromium against Spillway: `cfg.sdk` is `posthog`
// (posthog-js) or `segment` (@segment/analytics-next), each loaded from node_modules into a
// page (tests/e2e/sdk/browser/<sdk>.js, bundled by esbuild) served here on 127.0.0.1. The
// browser reaches nothing but 127.0.0.1 (`--host-resolver-rules`), downloads nothing, and is the
// system's `chromium` (cfg.chromium), driven through puppeteer-core.
//
// For each of `cfg.loads` (a variant of the SDK's settings: body encoding, delivery strategy)
// the page loads, the SDK sends its page view, identify and custom events, then more events are
// captured and the page is left at once: those go out on unload (posthog-js: `sendBeacon`;
// analytics-next: a keepalive fetch, or the batch flushed on `pagehide`). Prints
// {loads: [{variant, sent: [{id, name}], requests: [{method, path, status, type, contentType,
// contentEncoding}]}], errors}.
import { createServer } from 'node:http'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { build } from 'esbuild'
import puppeteer from 'puppeteer-core'
import { cfg, describe } from './common.mjs'

const errors = []
const entry = new URL(`./browser/${cfg.sdk}.js`, import.meta.url).pathname
const bundled = await build({
  entryPoints: [entry],
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: 'chrome110',
  write: false,
  logLevel: 'silent',
  define: { 'process.env.NODE_ENV': '"production"' },
})
const app = bundled.outputFiles[0].text

let pageCfg = {}
const server = createServer((req, res) => {
  const path = new URL(req.url, 'http://127.0.0.1').pathname
  if (path === '/app.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' })
    res.end(app)
  } else if (path === '/') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
    res.end(
      `<!doctype html><title>spillway ${cfg.sdk}</title>` +
        `<script>window.__cfg = ${JSON.stringify(pageCfg)}</script><script src="/app.js"></script>`,
    )
  } else if (path === '/left') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
    res.end('<!doctype html><title>left</title>')
  } else if (path === '/favicon.ico') {
    res.writeHead(204)
    res.end()
  } else {
    res.writeHead(404)
    res.end()
  }
})
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
const origin = `http://127.0.0.1:${server.address().port}`

const profile = mkdtempSync(join(tmpdir(), 'spillway-chromium-'))
const browser = await puppeteer.launch({
  executablePath: cfg.chromium,
  headless: true,
  pipe: true,
  userDataDir: profile,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-dev-shm-usage',
    '--no-first-run',
    '--no-default-browser-check',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-domain-reliability',
    '--disable-sync',
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
  ],
})

const timeoutMs = cfg.timeoutMs ?? 60000
const loads = []
try {
  const page = await browser.newPage()
  page.setDefaultTimeout(timeoutMs)
  page.on('pageerror', (e) => errors.push(`page: ${describe(e)}`))
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()} (${m.location()?.url ?? ''})`)
  })
  let current = null
  let pending = 0
  const toSpillway = (r) => r.url().startsWith(cfg.host)
  page.on('request', (r) => {
    if (toSpillway(r)) pending++
  })
  const done = (r, status) => {
    if (!toSpillway(r)) return
    pending--
    const u = new URL(r.url())
    const h = r.headers()
    current?.requests.push({
      method: r.method(),
      path: u.pathname + u.search,
      status,
      type: r.resourceType(),
      contentType: h['content-type'] ?? null,
      contentEncoding: h['content-encoding'] ?? null,
    })
  }
  // Done when its answer's head arrives: the body of a keepalive request's answer may never be
  // reported as loaded.
  page.on('response', (res) => done(res.request(), res.status()))
  page.on('requestfailed', (r) => done(r, `failed: ${r.failure()?.errorText}`))

  const until = async (what, f, within = timeoutMs) => {
    const deadline = Date.now() + within
    while (!(await f())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  for (const load of cfg.loads) {
    current = { variant: load.variant, sent: [], requests: [] }
    loads.push(current)
    pageCfg = { host: cfg.host, key: cfg.key, run: cfg.run, count: cfg.count, more: cfg.more, ...load }
    await page.goto(`${origin}/`, { waitUntil: 'load' })
    await page.waitForFunction('window.__ready === true || window.__error !== undefined')
    const failed = await page.evaluate('window.__error')
    if (failed) throw new Error(`the page failed: ${failed}`)
    // What the SDK sends while the page stays: at least one answered request, none in flight
    // (unless the load sends only as the page unloads: `unloadOnly`).
    if (!load.unloadOnly) {
      await until('the SDK to send', () => current.requests.length > 0 && pending === 0)
    }
    await page.evaluate('window.__more()')
    await page.goto(`${origin}/left`, { waitUntil: 'load' })
    // The unload's requests, as far as the browser reports them: one that finishes after the
    // page is gone may never be reported, so this wait ends quietly at its deadline. Whether
    // they arrived is the test's to check, in the table.
    await until('the unload requests', () => pending <= 0, 5000).catch(() => {})
    current.sent = JSON.parse((await page.evaluate("localStorage.getItem('spillway-sent')")) ?? '[]')
    await page.evaluate("localStorage.removeItem('spillway-sent')")
  }
} catch (e) {
  errors.push(describe(e))
} finally {
  await browser.close().catch(() => {})
  server.close()
  rmSync(profile, { recursive: true, force: true })
}
process.stdout.write(JSON.stringify({ loads, errors }) + '\n')
