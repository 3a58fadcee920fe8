// The Worker's entry point: the module worker-build generates (edge/build/index.js), wrapped so
// that a Rust panic still answers with the contract's JSON error body instead of the runtime's
// plain-text 500 (or, worse, a request left hanging until the runtime cancels it).
//
// A panic inside the Rust future traps in a microtask, not in the call we await, so the
// request's promise would never settle. The trap surfaces as a global "error" event; every
// request in flight on the broken instance is answered from here. Recovery itself is
// worker-build's: its module marks the Wasm instance broken on that same event and builds a
// fresh one on the next request (constructing the entrypoint runs that check).
import Worker from "./build/index.js";

// The group-commit batcher (a Durable Object class, bound as BATCHER in wrangler.toml).
export { Batcher } from "./build/index.js";

const INTERNAL = JSON.stringify({
  error: { code: "internal", message: "internal error; the request was not processed" },
});

const inFlight = new Set();

addEventListener("error", (event) => {
  for (const fail of inFlight) fail(event.error);
});

export default {
  async fetch(request, env, ctx) {
    let fail;
    const trapped = new Promise((_, reject) => {
      fail = reject;
    });
    inFlight.add(fail);
    try {
      return await Promise.race([new Worker(ctx, env).fetch(request), trapped]);
    } catch (error) {
      console.error(JSON.stringify({ status: 500, code: "internal", error: String(error) }));
      return new Response(INTERNAL, {
        status: 500,
        headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
      });
    } finally {
      inFlight.delete(fail);
    }
  },

  // The spill queue's consumer (replay to SQS). A panic fails the batch, so the Queue delivers
  // its messages again (acknowledged ones excepted).
  async queue(batch, env, ctx) {
    let fail;
    const trapped = new Promise((_, reject) => {
      fail = reject;
    });
    inFlight.add(fail);
    try {
      return await Promise.race([new Worker(ctx, env).queue(batch), trapped]);
    } finally {
      inFlight.delete(fail);
    }
  },
};
