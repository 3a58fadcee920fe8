// Spillway's Worker module entry, written by tools/worker-build around wasm-bindgen's output.
//
// A Rust panic aborts the wasm instance (a WebAssembly.RuntimeError, thrown by the call or
// reported as a global "error" event). Every call through this module first replaces a broken
// instance with a fresh one (`__wbg_reset_state`), so one panic costs one request, not the
// isolate. Durable Object instances built on a replaced instance are rebuilt on their next call.
import { WorkerEntrypoint } from "cloudflare:workers";
import * as wasm from "./index.js";

const health = wasm.__worker_init_state();

Error.stackTraceLimit = 100;

function markIfTrap(error) {
  if (error instanceof WebAssembly.RuntimeError) {
    console.error("Critical", error);
    health.criticalError = true;
  }
}

function freshInstance() {
  if (health.criticalError) {
    console.log("Reinitializing Wasm application");
    wasm.__wbg_reset_state();
    health.criticalError = false;
    health.instanceId += 1;
  }
}

addEventListener("error", (event) => markIfTrap(event.error));

// Runs `call` on a healthy instance and notes a trap it throws or rejects with.
function guarded(call) {
  freshInstance();
  let result;
  try {
    result = call();
  } catch (error) {
    markIfTrap(error);
    throw error;
  }
  if (result !== null && typeof result === "object" && typeof result.then === "function") {
    return result.then(undefined, (error) => {
      markIfTrap(error);
      throw error;
    });
  }
  return result;
}

// A Durable Object class that keeps its wasm object on the current instance.
function durable(Inner) {
  class Durable {
    constructor(...args) {
      this.args = args;
      guarded(() => this.build());
    }

    build() {
      this.inner = new Inner(...this.args);
      this.instanceId = health.instanceId;
    }

    current() {
      if (this.instanceId !== health.instanceId) this.build();
      return this.inner;
    }
  }
  for (const name of Object.getOwnPropertyNames(Inner.prototype)) {
    const method = Object.getOwnPropertyDescriptor(Inner.prototype, name).value;
    if (name === "constructor" || typeof method !== "function") continue;
    Durable.prototype[name] = function (...args) {
      return guarded(() => method.apply(this.current(), args));
    };
  }
  return Durable;
}

class Entrypoint extends WorkerEntrypoint {}

$HANDLERS
export default Entrypoint;
