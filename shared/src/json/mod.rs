//! An event's `data` kept exactly as the client wrote it, and the checks that make sure
//! PostgreSQL's `jsonb` can store it.
//!
//! `data` is never parsed into numbers or re-serialised: the client's bytes travel through SQS
//! and PostgreSQL parses them itself, so `1e400`, `-0` and `3.14159265358979323846` reach the
//! table exactly as `'<client text>'::jsonb` would read them. What `jsonb` cannot hold is refused
//! at the edge instead: `\u0000` (SQLSTATE 22P05) and numbers outside `numeric`'s range.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A JSON object as the client sent it (whitespace, escapes and number spelling unchanged).
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// `{}`, what an event without `data` stores.
    pub fn empty_object() -> Self {
        Self::from_json("{}").unwrap_or_else(|_| unreachable!("`{{}}` is JSON"))
    }

    /// Keeps `text`, which must be one well-formed JSON value.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text.to_owned()).map(Self)
    }

    /// Keeps a value a JSON parser already read, without reading it again.
    pub fn from_raw(raw: &RawValue) -> Self {
        Self(raw.to_owned())
    }

    /// The client's text.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl std::str::FromStr for RawJson {
    type Err = serde_json::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_json(text)
    }
}

impl Default for RawJson {
    fn default() -> Self {
        Self::empty_object()
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

/// `numeric`'s limits (PostgreSQL `numeric.c`): at most 131,072 digits before the decimal point
/// and a display scale of at most 16,383 digits after it, counted as the number is written.
const NUMERIC_MAX_INTEGER_DIGITS: i64 = 131_072;
const NUMERIC_MAX_SCALE: i64 = 16_383;

/// Why a well-formed JSON value cannot be stored as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonIssue {
    /// Nested deeper than allowed; `depth` is the first level over the limit.
    TooDeep { depth: usize },
    /// A string or key holds U+0000, which PostgreSQL's text and `jsonb` cannot store.
    Nul { path: String },
    /// An object has the same key twice (`jsonb` would silently keep the last one).
    DuplicateKey { path: String },
    /// A number PostgreSQL's `numeric` cannot represent.
    NumberOutOfRange { path: String, number: String },
    /// A `\u` escape names half of a surrogate pair without the other half, which is no
    /// character (PostgreSQL: "Unicode low surrogate must follow a high surrogate").
    LoneSurrogate { path: String },
    /// Not well-formed JSON (callers pass text a JSON parser already accepted).
    Malformed { at: usize },
}

/// Checks a well-formed JSON value for what `jsonb` cannot store, and its nesting: the value
/// itself sits at level `level`, each container inside it one level deeper, and no container
/// may sit deeper than `max_level`. `path` names the value in messages (`data`).
pub fn check_storable<'a>(
    text: &'a str,
    path: &'a str,
    level: usize,
    max_level: usize,
) -> Result<(), JsonIssue> {
    // Room for the usual depth and keys, so neither grows while scanning.
    let mut segs = Vec::with_capacity(8);
    segs.push(Seg::Name(path));
    let mut s = Scanner {
        text,
        b: text.as_bytes(),
        i: 0,
        path: segs,
        keys: Vec::with_capacity(KEYS_COMPARED),
        max_level,
    };
    s.ws();
    s.value(level)?;
    s.ws();
    if s.i != s.b.len() {
        return Err(JsonIssue::Malformed { at: s.i });
    }
    Ok(())
}

/// What [`edit_members`] does with one member of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEdit<'a> {
    Keep,
    Drop,
    /// Keep the key as written, with this JSON text as its value.
    Replace(Cow<'a, str>),
}

/// A JSON object's text with `edit` applied to each member, given its decoded key and its
/// value's text as written. Kept keys and values keep their bytes exactly (numbers beyond
/// `f64`, escapes, spelling): nothing is parsed into values and written back. When no member
/// is dropped or replaced, the text itself is returned; otherwise the members are joined by
/// `,` inside `{}` (whitespace between members, which means nothing, is not kept). The text
/// must be an object that [`check_storable`] accepted; an edit cannot add a repeated key.
pub fn edit_members<'a>(
    object: &'a str,
    mut edit: impl FnMut(&str, &'a str) -> MemberEdit<'a>,
) -> Result<Cow<'a, str>, JsonIssue> {
    let mut s = Scanner {
        text: object,
        b: object.as_bytes(),
        i: 0,
        path: Vec::new(),
        keys: Vec::new(),
        // Only the object's own members are read here; its nesting was checked before.
        max_level: usize::MAX,
    };
    s.ws();
    if s.peek() != Some(b'{') {
        return Err(s.malformed());
    }
    s.i += 1;
    // Each kept member: its key and colon as written, and its value's text.
    let mut kept: Vec<(&'a str, Cow<'a, str>)> = Vec::new();
    let mut changed = false;
    s.ws();
    if s.peek() == Some(b'}') {
        s.i += 1;
    } else {
        loop {
            s.ws();
            if s.peek() != Some(b'"') {
                return Err(s.malformed());
            }
            let start = s.i;
            let (raw_key, _) = s.string()?;
            let key = decode_key(raw_key).ok_or(JsonIssue::Malformed { at: start })?;
            s.expect(b':')?;
            s.ws();
            let value_start = s.i;
            s.value(1)?;
            let head = &object[start..value_start];
            let value = &object[value_start..s.i];
            match edit(&key, value) {
                MemberEdit::Keep => kept.push((head, Cow::Borrowed(value))),
                MemberEdit::Drop => changed = true,
                MemberEdit::Replace(new) => {
                    changed |= new != value;
                    kept.push((head, new));
                }
            }
            s.ws();
            match s.peek() {
                Some(b',') => s.i += 1,
                Some(b'}') => {
                    s.i += 1;
                    break;
                }
                _ => return Err(s.malformed()),
            }
        }
    }
    s.ws();
    if s.i != s.b.len() {
        return Err(s.malformed());
    }
    if !changed {
        return Ok(Cow::Borrowed(object));
    }
    let mut out = String::with_capacity(object.len());
    out.push('{');
    for (n, (head, value)) in kept.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(head);
        out.push_str(value);
    }
    out.push('}');
    Ok(Cow::Owned(out))
}

/// Up to this many keys, an object's keys are compared with each other to find a repeated one
/// (most objects have a handful, where that beats hashing); past that, they are hashed.
const KEYS_COMPARED: usize = 16;

/// What a string's escapes hold that `jsonb` refuses; the worse wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Escapes {
    Fine,
    Nul,
    LoneSurrogate,
}

/// One step of the path to where the scanner is, kept borrowed: it is only turned into text
/// when a problem is reported.
enum Seg<'a> {
    Name(&'a str),
    /// An object key as written (quotes and escapes included), decoded only for a message.
    Key(&'a str),
    Index(usize),
}

struct Scanner<'a> {
    text: &'a str,
    /// `text` as bytes.
    b: &'a [u8],
    i: usize,
    path: Vec<Seg<'a>>,
    /// The keys read so far of each object being scanned, outermost first: one buffer for the
    /// whole value instead of one per object (an object with many keys moves its own to a set).
    keys: Vec<Cow<'a, str>>,
    max_level: usize,
}

impl<'a> Scanner<'a> {
    fn path(&self) -> String {
        let mut out = String::new();
        for seg in &self.path {
            match seg {
                Seg::Name(n) => out.push_str(n),
                Seg::Key(raw) => {
                    out.push('.');
                    // It was decoded once already, before it was pushed.
                    out.extend(decode_key(raw).unwrap_or_default().chars().take(64));
                }
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn malformed(&self) -> JsonIssue {
        JsonIssue::Malformed { at: self.i }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), JsonIssue> {
        self.ws();
        if self.peek() == Some(byte) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.malformed())
        }
    }

    fn value(&mut self, level: usize) -> Result<(), JsonIssue> {
        match self.peek() {
            Some(b'{') => self.object(level),
            Some(b'[') => self.array(level),
            Some(b'"') => match self.string()?.1 {
                Escapes::Fine => Ok(()),
                Escapes::Nul => Err(JsonIssue::Nul { path: self.path() }),
                Escapes::LoneSurrogate => Err(JsonIssue::LoneSurrogate { path: self.path() }),
            },
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.malformed()),
        }
    }

    fn enter(&self, level: usize) -> Result<(), JsonIssue> {
        if level > self.max_level {
            Err(JsonIssue::TooDeep { depth: level })
        } else {
            Ok(())
        }
    }

    fn object(&mut self, level: usize) -> Result<(), JsonIssue> {
        self.enter(level)?;
        self.i += 1;
        // This object's keys: `self.keys[base..]`, or `many` once there are too many.
        let base = self.keys.len();
        let mut many: Option<HashSet<Cow<'a, str>>> = None;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.malformed());
            }
            let start = self.i;
            let (raw, escapes) = self.string()?;
            if escapes == Escapes::LoneSurrogate {
                return Err(JsonIssue::LoneSurrogate { path: self.path() });
            }
            let Some(key) = decode_key(raw) else {
                return Err(JsonIssue::Malformed { at: start });
            };
            self.path.push(Seg::Key(raw));
            if escapes == Escapes::Nul {
                return Err(JsonIssue::Nul { path: self.path() });
            }
            let fresh = match many.as_mut() {
                Some(set) => set.insert(key),
                None if self.keys.len() - base < KEYS_COMPARED => {
                    let fresh = !self.keys[base..].contains(&key);
                    self.keys.push(key);
                    fresh
                }
                None => {
                    let mut set: HashSet<Cow<'a, str>> = self.keys.drain(base..).collect();
                    let fresh = set.insert(key);
                    many = Some(set);
                    fresh
                }
            };
            if !fresh {
                return Err(JsonIssue::DuplicateKey { path: self.path() });
            }
            self.expect(b':')?;
            self.ws();
            self.value(level + 1)?;
            self.path.pop();
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    self.keys.truncate(base);
                    return Ok(());
                }
                _ => return Err(self.malformed()),
            }
        }
    }

    fn array(&mut self, level: usize) -> Result<(), JsonIssue> {
        self.enter(level)?;
        self.i += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        let mut index = 0;
        loop {
            self.ws();
            self.path.push(Seg::Index(index));
            self.value(level + 1)?;
            self.path.pop();
            index += 1;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.malformed()),
            }
        }
    }

    /// Skips a string; returns its raw text (quotes included) and what its escapes hold.
    fn string(&mut self) -> Result<(&'a str, Escapes), JsonIssue> {
        let start = self.i;
        self.i += 1;
        let mut escapes = Escapes::Fine;
        // A high surrogate escape waiting for its low half.
        let mut open_high = false;
        loop {
            let unit = match self.peek() {
                None => return Err(self.malformed()),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') if self.b.get(self.i + 1) == Some(&b'u') => {
                    let hex = self.b.get(self.i + 2..self.i + 6).ok_or(self.malformed())?;
                    let hex = std::str::from_utf8(hex).map_err(|_| self.malformed())?;
                    let unit = u16::from_str_radix(hex, 16).map_err(|_| self.malformed())?;
                    self.i += 6;
                    Some(unit)
                }
                Some(b'\\') => {
                    self.i += 2;
                    None
                }
                Some(0) => {
                    self.i += 1;
                    Some(0)
                }
                Some(_) => {
                    // A run of plain bytes, up to the next quote, backslash or NUL: one step,
                    // found with memchr instead of byte by byte.
                    let rest = &self.b[self.i..];
                    self.i += memchr::memchr3(b'"', b'\\', 0, rest).unwrap_or(rest.len());
                    None
                }
            };
            let low = matches!(unit, Some(0xDC00..=0xDFFF));
            if open_high != low {
                escapes = escapes.max(Escapes::LoneSurrogate);
            }
            open_high = matches!(unit, Some(0xD800..=0xDBFF));
            if unit == Some(0) {
                escapes = escapes.max(Escapes::Nul);
            }
        }
        if open_high {
            escapes = escapes.max(Escapes::LoneSurrogate);
        }
        // A slice of the text is UTF-8 unless it splits a character: no need to decode it again.
        // (`let else`, not `ok_or`: the error is only built when there is one.)
        let Some(raw) = self.text.get(start..self.i.min(self.b.len())) else {
            return Err(JsonIssue::Malformed { at: start });
        };
        Ok((raw, escapes))
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonIssue> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.malformed())
        }
    }

    fn number(&mut self) -> Result<(), JsonIssue> {
        let start = self.i;
        while matches!(
            self.peek(),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.i += 1;
        }
        let Some(text) = self.text.get(start..self.i) else {
            return Err(self.malformed());
        };
        if numeric_storable(text) {
            Ok(())
        } else {
            Err(JsonIssue::NumberOutOfRange {
                path: self.path(),
                number: text.chars().take(40).collect(),
            })
        }
    }
}

/// A key's text without quotes and escapes; borrowed when it has no escapes.
fn decode_key(raw: &str) -> Option<Cow<'_, str>> {
    if raw.contains('\\') {
        serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
    } else {
        raw.get(1..raw.len().checked_sub(1)?).map(Cow::Borrowed)
    }
}

/// Whether PostgreSQL's `numeric` input accepts this JSON number, following its rules: the
/// display scale is the digits written after the point minus the exponent, the weight that of
/// the first non-zero digit. RequestLimits as in PostgreSQL 12 to 17.
pub fn numeric_storable(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], &unsigned[at + 1..]),
        None => (unsigned, "0"),
    };
    let exponent = parse_exponent(exponent);
    // PostgreSQL refuses exponents of INT_MAX / 2 and beyond before anything else.
    if exponent.abs() >= i64::from(i32::MAX / 2) {
        return false;
    }
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let scale = (frac.len() as i64 - exponent).max(0);
    if scale > NUMERIC_MAX_SCALE {
        return false;
    }
    let digits = int.bytes().chain(frac.bytes());
    match digits.clone().position(|d| d != b'0') {
        None => true, // zero: only the scale counts
        Some(first) => {
            // Decimal exponent of the first significant digit.
            let lead = int.len() as i64 - 1 - first as i64 + exponent;
            lead < NUMERIC_MAX_INTEGER_DIGITS
        }
    }
}

/// An exponent's value, saturated far beyond any limit (the text is digits with a sign).
fn parse_exponent(text: &str) -> i64 {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let mut value: i64 = 0;
    for d in digits.bytes() {
        value = value
            .saturating_mul(10)
            .saturating_add(i64::from(d.wrapping_sub(b'0')));
    }
    if negative {
        -value
    } else {
        value
    }
}

#[cfg(test)]
mod tests;
