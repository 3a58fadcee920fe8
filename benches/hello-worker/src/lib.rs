//! The smallest useful `worker` 0.8.7 Worker: every request gets `200 hello`.
//!
//! It exists only as the reference point of the wasm size figure in `BENCHMARKS.md`: it is built
//! by `cargo xtask bench` with the workspace's build tool (`spillway-worker-build --profile worker benches/hello-worker`), the same
//! command, tools and `worker` profile as the edge, and its gzipped `index_bg.wasm` is compared
//! with the edge's. It does nothing else and is never deployed.

#[cfg(target_arch = "wasm32")]
use worker::{event, Context, Env, Request, Response, Result};

#[cfg(target_arch = "wasm32")]
#[event(fetch)]
async fn fetch(_req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    Response::ok("hello")
}
