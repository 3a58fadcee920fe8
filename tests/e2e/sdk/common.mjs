// Shared by the SDK drivers: the run's settings (one JSON argument), a fetch that records
// every HTTP status the SDK sees (to stdout at the end, and line by line to a file the Rust
// test can watch while the run is still going), and the report.
import { appendFileSync } from 'node:fs'
import { gzipSync } from 'node:zlib'

export const cfg = JSON.parse(process.argv[2] ?? '{}')
export const statuses = []
export const errors = []
// How each request body went out: `gzip` or `identity` (from its Content-Encoding).
export const encodings = []

function note(status) {
  statuses.push(status)
  if (cfg.statusFile) appendFileSync(cfg.statusFile, `${status}\n`)
}

// `gzip` here is for SDKs that do not compress themselves (analytics-node): the body is
// compressed as a proxy or a newer SDK would, with `Content-Encoding: gzip`.
export async function recordingFetch(url, init = {}) {
  let options = init
  if (cfg.gzipBody && typeof init.body === 'string') {
    options = { ...init, body: gzipSync(init.body), headers: { ...init.headers, 'Content-Encoding': 'gzip' } }
  }
  const headers = new Headers(options.headers ?? {})
  encodings.push(headers.get('content-encoding') ?? 'identity')
  try {
    const res = await fetch(url, options)
    note(res.status)
    return res
  } catch (e) {
    note(`network: ${e?.cause?.code ?? e?.message ?? e}`)
    throw e
  }
}

export function report(extra) {
  process.stdout.write(JSON.stringify({ statuses, errors, encodings, ...extra }) + '\n')
}

export function describe(e) {
  if (e instanceof Error) return `${e.name}: ${e.message}`
  if (e && typeof e === 'object') {
    const reason = e.reason instanceof Error ? e.reason.message : e.reason
    return JSON.stringify({ code: e.code, reason: String(reason ?? ''), status: e.status })
  }
  return String(e)
}
