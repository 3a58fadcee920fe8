//! The edge's context of a request, as each of its events carries it ([`EdgeInfo`]): the
//! configured `request.cf` fields (`EDGE_CONTEXT`), bounded and typed, and the client's address
//! only as `IP_POLICY` allows.
//!
//! Pure: what the runtime read ([`CfFields`]) and the request's headers in, the context out.
//! The runtime adapter reads `request.cf` and nothing else; every decision (which fields, how
//! long, which numbers, how the address is cut) is made here. A value that breaks a bound is
//! left out or shortened, never refused: the context is the edge's, and a request is not the
//! client's fault for it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::HeaderMap;
use spillway_shared::EdgeInfo;

use crate::config::{ContextField, ContextPolicy, IpPolicy};

/// The header Cloudflare sets to the address the request came from (a client cannot set it:
/// Cloudflare overwrites it; `wrangler dev` sets it from the socket when the client did not).
pub const CONNECTING_IP: &str = "cf-connecting-ip";

/// `request.cf` as the runtime gave it: each field present, as text (numbers written as
/// JavaScript writes them), before any selection or bound. It lives in the request's
/// extensions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CfFields(Vec<(ContextField, String)>);

impl CfFields {
    /// Fields as read, in any order; a field given twice keeps its first value.
    pub fn new(fields: impl IntoIterator<Item = (ContextField, String)>) -> Self {
        Self(fields.into_iter().collect())
    }

    fn get(&self, field: ContextField) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v.as_str())
    }

    /// The data centre, bounded, whatever `EDGE_CONTEXT` says: the log line and the choice of
    /// batcher use it, and it names Cloudflare's building, not the client.
    pub fn colo(&self) -> Option<String> {
        text(self.get(ContextField::Colo)?, max_chars(ContextField::Colo))
    }
}

/// Longest value of each text field, in characters. Longer ones are cut at a character:
/// Cloudflare's own values are far shorter (codes of 2 to 6 characters, IANA zone names up to
/// 30, place and network names rarely past 60), so a cut only bounds the row.
fn max_chars(field: ContextField) -> usize {
    match field {
        ContextField::Colo | ContextField::Country | ContextField::Continent => 8,
        ContextField::RegionCode | ContextField::PostalCode => 16,
        ContextField::Timezone => 64,
        _ => 128,
    }
}

/// A text value: trimmed, cut to `max` characters; none when empty or holding a control
/// character (U+0000 among them, which PostgreSQL cannot store in text or jsonb).
fn text(raw: &str, max: usize) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() || raw.chars().any(char::is_control) {
        return None;
    }
    Some(raw.chars().take(max).collect())
}

/// A coordinate in degrees within `±limit`.
fn degrees(raw: &str, limit: f64) -> Option<f64> {
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|d| d.is_finite() && d.abs() <= limit)
}

/// An AS number: a whole number that fits 32 bits (JavaScript may write it `395747` or
/// `395747.0`).
fn asn(raw: &str) -> Option<u32> {
    let n = raw.trim().parse::<f64>().ok()?;
    (n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n)).then_some(n as u32)
}

/// The address as the policy keeps it, in its canonical text form; none when the header is
/// absent or not an address. An IPv4 address written as IPv6 (`::ffff:a.b.c.d`) is cut as
/// the IPv4 address it is.
pub fn client_ip(header: Option<&str>, policy: IpPolicy) -> Option<String> {
    if policy == IpPolicy::None {
        return None;
    }
    let ip = header?.trim().parse::<IpAddr>().ok()?.to_canonical();
    let kept = match (policy, ip) {
        (IpPolicy::Truncated, IpAddr::V4(v4)) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, 0))
        }
        (IpPolicy::Truncated, IpAddr::V6(v6)) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
        }
        _ => ip,
    };
    Some(kept.to_string())
}

/// The context every event of the request carries: the configured fields that `cf` holds,
/// bounded, and the address as the policy allows; none when that leaves nothing.
pub fn edge_context(
    cf: Option<&CfFields>,
    headers: &HeaderMap,
    policy: &ContextPolicy,
) -> Option<EdgeInfo> {
    let mut info = EdgeInfo::default();
    if let Some(cf) = cf {
        for field in policy.fields.iter() {
            let raw = cf.get(field);
            let text_of = || raw.and_then(|v| text(v, max_chars(field)));
            match field {
                ContextField::Colo => info.colo = text_of(),
                ContextField::Country => info.country = text_of(),
                ContextField::Region => info.region = text_of(),
                ContextField::RegionCode => info.region_code = text_of(),
                ContextField::City => info.city = text_of(),
                ContextField::PostalCode => info.postal_code = text_of(),
                ContextField::Continent => info.continent = text_of(),
                ContextField::Timezone => info.timezone = text_of(),
                ContextField::Latitude => info.latitude = raw.and_then(|v| degrees(v, 90.0)),
                ContextField::Longitude => info.longitude = raw.and_then(|v| degrees(v, 180.0)),
                ContextField::Asn => info.asn = raw.and_then(asn),
                ContextField::AsOrganization => info.as_organization = text_of(),
                // Cloudflare sets `isEUCountry` to "1" for a country of the Union and leaves
                // it out otherwise: absent beside a known country means "no".
                ContextField::IsEuCountry => {
                    info.is_eu_country = match raw.map(str::trim) {
                        Some("1" | "true") => Some(true),
                        Some("0" | "false") => Some(false),
                        Some(_) => None,
                        None => cf.get(ContextField::Country).map(|_| false),
                    }
                }
            }
        }
    }
    if policy.ip != IpPolicy::None {
        let header = headers.get(CONNECTING_IP).and_then(|v| v.to_str().ok());
        info.ip = client_ip(header, policy.ip);
    }
    fit(&mut info);
    (!info.is_empty()).then_some(info)
}

/// The most the context may take in an event's envelope, in bytes of its JSON.
///
/// The packer allows `ENRICHMENT_BYTES` (512) on top of each event as its client sent it, and
/// `MAX_EVENT_BYTES` is the client's size: what the edge adds must fit in that, or an event
/// within the limit could be refused as too large once enriched. The ids, times, key id and
/// source take up to 243 of them; the context gets the rest, less a few bytes. A real
/// location's default fields take about 140 bytes, and all thirteen fields with an IPv4
/// address about 245 (Miniflare's Austin); long names or an IPv6 address beside every field
/// reach the cap, and then the least telling fields are left out.
pub const MAX_CONTEXT_BYTES: usize = 264;

/// Drops the least telling fields, one at a time, until the context fits
/// [`MAX_CONTEXT_BYTES`]: first the opt-in ones and the long names, last the short codes and
/// the address the deployment asked for. The ones left always fit (each at its bound, they
/// take about 230 bytes), which the test of the widest context holds.
fn fit(info: &mut EdgeInfo) {
    let drops: [fn(&mut EdgeInfo); 13] = [
        |i| i.postal_code = None,
        |i| i.latitude = None,
        |i| i.longitude = None,
        |i| i.as_organization = None,
        |i| i.region = None,
        |i| i.city = None,
        |i| i.timezone = None,
        |i| i.region_code = None,
        |i| i.asn = None,
        |i| i.is_eu_country = None,
        |i| i.continent = None,
        |i| i.country = None,
        |i| i.colo = None,
    ];
    for drop in drops {
        if serde_json::to_string(info).map_or(0, |s| s.len()) <= MAX_CONTEXT_BYTES {
            return;
        }
        drop(info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ContextFields;

    /// `request.cf` as `wrangler dev` gives it offline (Miniflare's fallback), numbers as the
    /// adapter writes them.
    fn miniflare_cf() -> CfFields {
        CfFields::new(
            [
                (ContextField::Colo, "DFW"),
                (ContextField::Country, "US"),
                (ContextField::Region, "Texas"),
                (ContextField::RegionCode, "TX"),
                (ContextField::City, "Austin"),
                (ContextField::PostalCode, "78701"),
                (ContextField::Continent, "NA"),
                (ContextField::Timezone, "America/Chicago"),
                (ContextField::Latitude, "30.27130"),
                (ContextField::Longitude, "-97.74260"),
                (ContextField::Asn, "395747"),
                (ContextField::AsOrganization, ""),
            ]
            .map(|(f, v)| (f, v.to_owned())),
        )
    }

    fn headers(ip: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONNECTING_IP, ip.parse().expect("header"));
        h
    }

    #[test]
    fn the_default_keeps_the_default_fields_and_no_address() {
        let cf = miniflare_cf();
        let info = edge_context(
            Some(&cf),
            &headers("127.45.67.89"),
            &ContextPolicy::default(),
        )
        .expect("context");
        assert_eq!(
            info,
            EdgeInfo {
                colo: Some("DFW".into()),
                country: Some("US".into()),
                region: Some("Texas".into()),
                city: Some("Austin".into()),
                continent: Some("NA".into()),
                timezone: Some("America/Chicago".into()),
                asn: Some(395_747),
                // Empty in Miniflare's fallback: left out, not stored as "".
                as_organization: None,
                ..EdgeInfo::default()
            }
        );
        assert_eq!(info.ip, None);
    }

    #[test]
    fn every_field_typed_when_asked_for() {
        let policy = ContextPolicy {
            fields: ContextFields::of(&ContextField::ALL),
            ip: IpPolicy::Full,
        };
        let info = edge_context(Some(&miniflare_cf()), &headers("127.45.67.89"), &policy)
            .expect("context");
        assert_eq!(info.region_code.as_deref(), Some("TX"));
        assert_eq!(info.postal_code.as_deref(), Some("78701"));
        assert_eq!(info.latitude, Some(30.2713));
        assert_eq!(info.longitude, Some(-97.7426));
        // No `isEUCountry` beside a known country: not in the Union.
        assert_eq!(info.is_eu_country, Some(false));
        assert_eq!(info.ip.as_deref(), Some("127.45.67.89"));
        let json = serde_json::to_value(&info).expect("json");
        assert!(
            json["latitude"].is_number() && json["asn"].is_number(),
            "{json}"
        );
    }

    #[test]
    fn values_out_of_bounds_are_cut_or_left_out() {
        let cf = CfFields::new(
            [
                (ContextField::City, "x".repeat(300)),
                (ContextField::Colo, "FRA\u{0}".into()),
                (ContextField::Country, "  DE ".into()),
                (ContextField::Latitude, "91".into()),
                (ContextField::Longitude, "NaN".into()),
                (ContextField::Asn, "4294967296".into()),
                (ContextField::IsEuCountry, "1".into()),
            ]
            .map(|(f, v)| (f, v.to_owned())),
        );
        let policy = ContextPolicy {
            fields: ContextFields::of(&ContextField::ALL),
            ip: IpPolicy::None,
        };
        let info = edge_context(Some(&cf), &HeaderMap::new(), &policy).expect("context");
        assert_eq!(info.city.as_ref().map(String::len), Some(128));
        assert_eq!(info.colo, None);
        assert_eq!(info.country.as_deref(), Some("DE"));
        assert_eq!(
            (info.latitude, info.longitude, info.asn),
            (None, None, None)
        );
        assert_eq!(info.is_eu_country, Some(true));
        assert_eq!(asn("395747.0"), Some(395_747));
        assert_eq!(asn("1.5"), None);
        // Multi-byte text is cut at a character.
        let long = "é".repeat(200);
        assert_eq!(text(&long, 128).map(|t| t.chars().count()), Some(128));
    }

    #[test]
    fn unconfigured_fields_and_nothing_at_all() {
        let policy = ContextPolicy {
            fields: ContextFields::of(&[ContextField::Continent]),
            ip: IpPolicy::None,
        };
        let info = edge_context(Some(&miniflare_cf()), &HeaderMap::new(), &policy);
        assert_eq!(
            info,
            Some(EdgeInfo {
                continent: Some("NA".into()),
                ..EdgeInfo::default()
            })
        );
        let none = ContextPolicy {
            fields: ContextFields::NONE,
            ip: IpPolicy::None,
        };
        assert_eq!(
            edge_context(Some(&miniflare_cf()), &headers("1.2.3.4"), &none),
            None
        );
        assert_eq!(edge_context(None, &HeaderMap::new(), &policy), None);
        // The address alone, where that is all that is asked for.
        let ip_only = ContextPolicy {
            fields: ContextFields::NONE,
            ip: IpPolicy::Truncated,
        };
        assert_eq!(
            edge_context(None, &headers("203.0.113.77"), &ip_only).and_then(|i| i.ip),
            Some("203.0.113.0".into())
        );
    }

    #[test]
    fn addresses_are_cut_to_their_network() {
        let cut = |ip| client_ip(Some(ip), IpPolicy::Truncated);
        assert_eq!(cut("127.45.67.89").as_deref(), Some("127.45.67.0"));
        assert_eq!(
            cut("2001:db8:abcd:12:3456:789a:bcde:f012").as_deref(),
            Some("2001:db8:abcd::")
        );
        assert_eq!(cut("::ffff:198.51.100.7").as_deref(), Some("198.51.100.0"));
        assert_eq!(
            client_ip(Some("2001:DB8::1"), IpPolicy::Full).as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(client_ip(Some("127.45.67.89"), IpPolicy::None), None);
        assert_eq!(cut("not an address"), None);
        assert_eq!(cut("1.2.3.4, 5.6.7.8"), None);
        assert_eq!(client_ip(None, IpPolicy::Full), None);
    }

    /// The packer allows [`ENRICHMENT_BYTES`] on top of each event as its client sent it
    /// (`MAX_EVENT_BYTES` is the client's size): everything the edge adds, at its widest, must
    /// fit in it, or an event within the limit could be refused as too large once enriched.
    /// The widest context is every field at its bound in four-byte characters, the longest
    /// address kept whole, and numbers at their longest; then the longest key id, the ids and
    /// times, the corrected event time and a collector's `source`.
    #[test]
    fn the_widest_enrichment_fits_the_packers_allowance() {
        use chrono::{TimeZone, Utc};
        use spillway_shared::event::MAX_KEY_ID_CHARS;
        use spillway_shared::limits::ENRICHMENT_BYTES;
        use spillway_shared::{Event, RawJson, Source};

        let cf = CfFields::new(ContextField::ALL.map(|f| {
            let v = match f {
                ContextField::Latitude => "-89.12345678901234".to_owned(),
                ContextField::Longitude => "-179.1234567890123".to_owned(),
                ContextField::Asn => u32::MAX.to_string(),
                ContextField::IsEuCountry => "1".to_owned(),
                f => "\u{1D11E}".repeat(max_chars(f)),
            };
            (f, v)
        }));
        let policy = ContextPolicy {
            fields: ContextFields::of(&ContextField::ALL),
            ip: IpPolicy::Full,
        };
        let widest_ip = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe";
        let edge = edge_context(Some(&cf), &headers(widest_ip), &policy).expect("context");
        // The address asked for is kept; long names made way for it.
        assert_eq!(edge.ip.as_deref(), Some(widest_ip));
        assert!(serde_json::to_string(&edge).expect("json").len() <= MAX_CONTEXT_BYTES);
        assert_eq!(
            (edge.city.as_ref(), edge.postal_code.as_ref()),
            (None, None)
        );

        let at = Utc
            .with_ymd_and_hms(2026, 11, 28, 8, 0, 0)
            .single()
            .expect("time")
            + chrono::Duration::microseconds(123_456);
        // The client's side: its type, its timestamp in the shortest form RFC 3339 allows
        // (the envelope writes microseconds), `data` as sent.
        let sent = r#"{"type":"t","timestamp":"2026-11-28T08:00:00Z","data":{}}"#;
        let event = Event {
            id: uuid::Uuid::max(),
            event_type: "t".into(),
            occurred_at: Some(at),
            received_at: at,
            key_id: "k".repeat(MAX_KEY_ID_CHARS),
            edge: Some(edge),
            source: Source::Posthog,
            event_time: Some(at),
            data: RawJson::empty_object(),
        };
        let enriched = serde_json::to_string(&event).expect("json").len();
        assert!(
            enriched - sent.len() <= ENRICHMENT_BYTES,
            "the edge adds {} bytes, the packer allows {ENRICHMENT_BYTES}",
            enriched - sent.len()
        );
    }
}
