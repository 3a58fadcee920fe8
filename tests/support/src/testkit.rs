//! Small helpers every test crate needs once: a gzip body, and whether the built worker (for a
//! given buffer) is there.

use std::io::Write;

/// `bytes` gzip-compressed (one member, default level), as an SDK sends a compressed body.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(bytes)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

/// Whether the built worker (`edge/build`, what `wrangler.toml`'s `main` names) is there.
///
/// `false` when it is not, after printing that `test` is skipped; a panic instead when
/// `SPILLWAY_REQUIRE_WASM` is set, as `cargo xtask test` does after building it.
pub fn worker_built(test: &str) -> bool {
    let root = crate::repo_root();
    let built = root.join("edge/build/index_bg.wasm").is_file()
        && crate::stack::prebuilt_config(&root).is_ok();
    if !built {
        assert!(
            std::env::var_os("SPILLWAY_REQUIRE_WASM").is_none(),
            "{test}: the worker is not built (edge/build) but SPILLWAY_REQUIRE_WASM is set"
        );
        eprintln!(
            "SKIPPED {test}: the worker is not built (run `cargo xtask test` or `cargo xtask dev`)"
        );
    }
    built
}

/// Whether the built worker for `buffer` is there and carries that buffer's SDK
/// ([`crate::stack::check_worker_build`]; the Kinesis build is kept apart, see
/// [`crate::stack::worker_dir`]). Skips, or panics under `SPILLWAY_REQUIRE_WASM`, as
/// [`worker_built`] does, saying what is there instead.
pub fn worker_built_for(test: &str, buffer: crate::stack::BufferKind) -> bool {
    if buffer == crate::stack::BufferKind::Sqs && !worker_built(test) {
        return false;
    }
    match crate::stack::check_worker_build(&crate::repo_root(), buffer) {
        Ok(()) => true,
        Err(e) => {
            assert!(
                std::env::var_os("SPILLWAY_REQUIRE_WASM").is_none(),
                "{test}: {e:#} (SPILLWAY_REQUIRE_WASM is set)"
            );
            eprintln!("SKIPPED {test}: {e:#}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    #[test]
    fn gzip_round_trips() {
        let body = br#"[{"type":"page_view"}]"#;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&super::gzip(body)[..])
            .read_to_end(&mut out)
            .expect("valid gzip");
        assert_eq!(out, body);
    }
}
