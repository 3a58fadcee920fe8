//! HTTP/1.1 framing as the meter needs it: one message read whole, its bytes kept exactly as
//! received (to relay them unchanged) beside its decoded body (to count it).

use std::io::{self, BufRead, ErrorKind};

/// Larger heads are not HTTP the SDK sends; the connection is dropped.
const MAX_HEAD: usize = 64 * 1024;

/// One HTTP/1.1 message as read: its bytes exactly as received, and its body decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Message {
    pub(super) raw: Vec<u8>,
    pub(super) start_line: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
    /// The body ran to the end of the connection (a response without length or chunking).
    pub(super) until_close: bool,
}

impl Message {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// The status of a response's start line.
    pub(super) fn status(&self) -> Option<u16> {
        self.start_line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Whether the connection must close after this message.
    pub(super) fn closes(&self) -> bool {
        self.until_close
            || self.has_token("connection", "close")
            || self.start_line.trim_end().ends_with("HTTP/1.0")
            || self.start_line.starts_with("HTTP/1.0")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Request,
    /// A response: without a length it runs to the end of the connection, and 1xx, 204 and
    /// 304 carry no body.
    Response,
}

pub(super) fn bad(what: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, what.to_owned())
}

/// Reads one line (ending in `\n`) into `raw`, returning it without its line end.
fn read_line(r: &mut impl BufRead, raw: &mut Vec<u8>) -> io::Result<Option<String>> {
    let start = raw.len();
    let n = r.read_until(b'\n', raw)?;
    if n == 0 {
        return Ok(None);
    }
    if raw.len() > MAX_HEAD + start || !raw.ends_with(b"\n") {
        return Err(bad("line too long or cut short"));
    }
    let line = String::from_utf8_lossy(&raw[start..]);
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
}

/// Reads one message; `Ok(None)` when the stream ends before its first byte.
pub(super) fn read_message(r: &mut impl BufRead, kind: Kind) -> io::Result<Option<Message>> {
    let mut raw = Vec::new();
    let start_line = match read_line(r, &mut raw)? {
        None => return Ok(None),
        Some(l) => l,
    };
    let mut headers = Vec::new();
    loop {
        let line = read_line(r, &mut raw)?.ok_or_else(|| bad("headers cut short"))?;
        if line.is_empty() {
            break;
        }
        if raw.len() > MAX_HEAD {
            return Err(bad("headers too long"));
        }
        let (k, v) = line.split_once(':').ok_or_else(|| bad("header line"))?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let mut m = Message {
        raw,
        start_line,
        headers,
        body: Vec::new(),
        until_close: false,
    };
    let bodiless = kind == Kind::Response
        && m.status()
            .is_some_and(|s| (100..200).contains(&s) || s == 204 || s == 304);
    if bodiless {
        return Ok(Some(m));
    }
    if m.has_token("transfer-encoding", "chunked") {
        loop {
            let size_line = read_line(r, &mut m.raw)?.ok_or_else(|| bad("chunk cut short"))?;
            let size_text = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !read_line(r, &mut m.raw)?
                    .ok_or_else(|| bad("trailers cut short"))?
                    .is_empty()
                {}
                break;
            }
            let at = m.raw.len();
            m.raw.resize(at + size + 2, 0);
            r.read_exact(&mut m.raw[at..])?;
            if &m.raw[at + size..] != b"\r\n" {
                return Err(bad("chunk not ended by CRLF"));
            }
            m.body.extend_from_slice(&m.raw[at..at + size]);
        }
    } else if let Some(len) = m.header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("Content-Length"))?;
        let at = m.raw.len();
        m.raw.resize(at + len, 0);
        r.read_exact(&mut m.raw[at..])?;
        m.body = m.raw[at..].to_vec();
    } else if kind == Kind::Response {
        let at = m.raw.len();
        r.read_to_end(&mut m.raw)?;
        m.body = m.raw[at..].to_vec();
        m.until_close = true;
    }
    Ok(Some(m))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn reads_chunked_and_sized_messages_keeping_their_bytes() {
        let wire = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
        let mut r = Cursor::new(&wire[..]);
        let a = read_message(&mut r, Kind::Request)
            .expect("io")
            .expect("one");
        assert_eq!(a.body, b"abcde");
        let b = read_message(&mut r, Kind::Request)
            .expect("io")
            .expect("two");
        assert_eq!(b.body, b"hi");
        let mut both = a.raw.clone();
        both.extend_from_slice(&b.raw);
        assert_eq!(both, wire);
        assert!(read_message(&mut r, Kind::Request).expect("io").is_none());
    }

    #[test]
    fn a_response_without_length_runs_to_the_end_and_204_has_no_body() {
        let mut r = Cursor::new(&b"HTTP/1.1 200 OK\r\n\r\nall of it"[..]);
        let m = read_message(&mut r, Kind::Response)
            .expect("io")
            .expect("m");
        assert_eq!(
            (m.body.as_slice(), m.until_close),
            (&b"all of it"[..], true)
        );
        let mut r = Cursor::new(&b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\n"[..]);
        let m = read_message(&mut r, Kind::Response)
            .expect("io")
            .expect("m");
        assert!(m.body.is_empty() && !m.until_close);
        let mut cut = Cursor::new(&b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"[..]);
        assert!(read_message(&mut cut, Kind::Response).is_err());
    }
}
