//! The shipped wasm's compressed size, and the budget it may be held to (`--max-gzip BYTES`):
//! Cloudflare caps a Worker by its compressed size, and the project keeps each deployable build
//! at most 600 KiB (614,400 B) gzipped. It measures; it does not decide what to cut.
//!
//! The figure is gzip at level 9 by flate2's pure-Rust deflate (miniz_oxide), so the tool needs
//! no `gzip` binary. It is not byte-identical to GNU `gzip -9` (the figure of record in
//! BENCHMARKS.md): on two builds of the edge it came out 41 B and 525 B larger (518,008 B
//! against 517,967 B; 552,342 B against 551,817 B), under 0.1%.

use std::io::{self, Write};

use anyhow::{bail, Result};
use flate2::write::GzEncoder;
use flate2::Compression;

/// How the measured figure relates to `gzip -9`, said next to every budget failure.
pub const SIZE_NOTE: &str = "flate2's gzip at level 9, a few bytes off GNU gzip -9";

/// The gzip size of `data` at level 9, without keeping the compressed bytes.
pub fn gzip_size(data: &[u8]) -> u64 {
    let mut gz = GzEncoder::new(Counter(0), Compression::best());
    // Writing to a counter cannot fail.
    gz.write_all(data).expect("counting writer");
    gz.finish().expect("counting writer").0
}

/// Ok when `size` is within `budget` (at most, the limit included).
pub fn check_budget(size: u64, budget: Option<u64>) -> Result<()> {
    match budget {
        Some(max) if size > max => bail!(
            "index_bg.wasm is {size} B compressed, over the --max-gzip budget of {max} B by {} B \
             ({SIZE_NOTE}); the previous build was left in place",
            size - max
        ),
        _ => Ok(()),
    }
}

/// A writer that only counts.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::read::GzDecoder;

    use super::*;

    #[test]
    fn the_count_is_the_length_of_a_gzip_stream_that_decodes_back() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut gz = GzEncoder::new(Vec::new(), Compression::best());
        gz.write_all(&data).expect("vec");
        let stream = gz.finish().expect("vec");
        assert_eq!(gzip_size(&data), stream.len() as u64);
        let mut back = Vec::new();
        GzDecoder::new(&stream[..])
            .read_to_end(&mut back)
            .expect("decodes");
        assert_eq!(back, data);
        // Compressible data is compressed (a store-only deflate would be larger than the input).
        assert!(gzip_size(&data) < data.len() as u64 / 4);
        // An empty input is the 10-byte header, the 2-byte empty final block, the 8-byte trailer.
        assert_eq!(gzip_size(&[]), 20);
    }

    #[test]
    fn the_budget_includes_its_limit() {
        assert!(check_budget(614_400, Some(614_400)).is_ok());
        assert!(check_budget(614_399, Some(614_400)).is_ok());
        let over = check_budget(614_401, Some(614_400)).expect_err("over by one");
        assert!(over.to_string().contains("by 1 B"), "{over}");
        assert!(check_budget(u64::MAX, None).is_ok());
    }
}
