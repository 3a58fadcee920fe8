//! Inflating a gzip body within a cap, for every protocol (`Content-Encoding: gzip`, PostHog's
//! `?compression=`, gzip found by its magic bytes). It does not decide when a body is gzip.

use std::io::Read;

use flate2::read::MultiGzDecoder;

use crate::error::EdgeError;

/// Inflates a gzip body, refusing it as soon as the output would exceed `cap` bytes: a small
/// bomb costs at most `cap` bytes of work and memory, never its full inflated size.
pub fn gunzip_capped(body: &[u8], cap: usize) -> Result<Vec<u8>, EdgeError> {
    const CHUNK: usize = 64 * 1024;
    let mut decoder = MultiGzDecoder::new(body);
    let mut out = Vec::with_capacity((body.len() * 4).min(cap).min(1024 * 1024));
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = decoder
            .read(&mut chunk)
            .map_err(|e| EdgeError::InvalidGzip(e.to_string()))?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > cap {
            return Err(EdgeError::DecompressedTooLarge { limit: cap });
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use spillway_support::gzip;
    use std::io::Write;

    #[test]
    fn gzip_round_trip_and_concatenated_members() {
        let mut two = gzip(b"[{\"type\":\"a\"},");
        two.extend(gzip(b"{\"type\":\"b\"}]"));
        assert_eq!(
            gunzip_capped(&two, 1024).expect("valid"),
            b"[{\"type\":\"a\"},{\"type\":\"b\"}]"
        );
    }

    #[test]
    fn corrupt_gzip_is_refused() {
        let mut z = gzip(b"{\"type\":\"a\"}");
        let mid = z.len() / 2;
        z[mid] ^= 0xff;
        assert!(matches!(
            gunzip_capped(&z, 1024),
            Err(EdgeError::InvalidGzip(_))
        ));
        assert!(matches!(
            gunzip_capped(b"not gzip at all", 1024),
            Err(EdgeError::InvalidGzip(_))
        ));
        let truncated = &gzip(b"{\"type\":\"a\"}")[..10];
        assert!(matches!(
            gunzip_capped(truncated, 1024),
            Err(EdgeError::InvalidGzip(_))
        ));
    }

    #[test]
    fn gzip_bomb_stops_at_the_cap() {
        // 256 MiB of zeros compress to about 250 KiB.
        let mut e = GzEncoder::new(Vec::new(), Compression::best());
        let zeros = vec![0u8; 1024 * 1024];
        for _ in 0..256 {
            e.write_all(&zeros).expect("in memory");
        }
        let bomb = e.finish().expect("in memory");
        assert!(bomb.len() < 300 * 1024, "{}", bomb.len());
        let started = std::time::Instant::now();
        assert_eq!(
            gunzip_capped(&bomb, 4 * 1024 * 1024),
            Err(EdgeError::DecompressedTooLarge {
                limit: 4 * 1024 * 1024
            })
        );
        // Inflating the whole bomb would take seconds in a debug build; the cap stops it early.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn exactly_at_the_cap_is_fine() {
        let body = vec![b' '; 1000];
        assert_eq!(gunzip_capped(&gzip(&body), 1000).expect("fits").len(), 1000);
        assert!(gunzip_capped(&gzip(&body), 999).is_err());
    }
}
