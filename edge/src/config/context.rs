//! What the edge adds to each event from what only it knows (`EDGE_CONTEXT`, `IP_POLICY`):
//! which of Cloudflare's `request.cf` fields, and whether the client's address, whole or
//! truncated. Parsed and validated here, once; the values themselves are read per request by
//! `request::context`.
//!
//! It does not read a request, nor bound the values (`request::context` does both).

use std::fmt;

/// One field of `request.cf` the edge can store with each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContextField {
    Colo,
    Country,
    Region,
    RegionCode,
    City,
    PostalCode,
    Continent,
    Timezone,
    Latitude,
    Longitude,
    Asn,
    AsOrganization,
    IsEuCountry,
}

impl ContextField {
    /// Every field, in the order the context is written.
    pub const ALL: [ContextField; 13] = [
        ContextField::Colo,
        ContextField::Country,
        ContextField::Region,
        ContextField::RegionCode,
        ContextField::City,
        ContextField::PostalCode,
        ContextField::Continent,
        ContextField::Timezone,
        ContextField::Latitude,
        ContextField::Longitude,
        ContextField::Asn,
        ContextField::AsOrganization,
        ContextField::IsEuCountry,
    ];

    /// Its name in `EDGE_CONTEXT` and in the stored `context`.
    pub fn name(self) -> &'static str {
        match self {
            ContextField::Colo => "colo",
            ContextField::Country => "country",
            ContextField::Region => "region",
            ContextField::RegionCode => "region_code",
            ContextField::City => "city",
            ContextField::PostalCode => "postal_code",
            ContextField::Continent => "continent",
            ContextField::Timezone => "timezone",
            ContextField::Latitude => "latitude",
            ContextField::Longitude => "longitude",
            ContextField::Asn => "asn",
            ContextField::AsOrganization => "as_organization",
            ContextField::IsEuCountry => "is_eu_country",
        }
    }

    /// Its property name on the runtime's `request.cf` object.
    pub fn cf_name(self) -> &'static str {
        match self {
            ContextField::RegionCode => "regionCode",
            ContextField::PostalCode => "postalCode",
            ContextField::AsOrganization => "asOrganization",
            ContextField::IsEuCountry => "isEUCountry",
            other => other.name(),
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of [`ContextField`]s.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ContextFields(u16);

impl ContextFields {
    /// No field: `EDGE_CONTEXT=none`.
    pub const NONE: ContextFields = ContextFields(0);

    /// The default of `EDGE_CONTEXT`: where a request comes from down to its city, and its
    /// network, which is what analytics asks of geography. Left out unless asked for: the
    /// postal code and the coordinates, which in a small town narrow a client down to a few
    /// streets, and `region_code` and `is_eu_country`, which repeat `region` and `country`.
    pub const DEFAULT: ContextFields = ContextFields::of(&[
        ContextField::Colo,
        ContextField::Country,
        ContextField::Region,
        ContextField::City,
        ContextField::Continent,
        ContextField::Timezone,
        ContextField::Asn,
        ContextField::AsOrganization,
    ]);

    /// The set of `fields`.
    pub const fn of(fields: &[ContextField]) -> ContextFields {
        let mut bits = 0u16;
        let mut i = 0;
        while i < fields.len() {
            bits |= 1 << (fields[i] as u16);
            i += 1;
        }
        ContextFields(bits)
    }

    pub fn contains(self, field: ContextField) -> bool {
        self.0 & field.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The fields in the set, in [`ContextField::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = ContextField> {
        ContextField::ALL
            .into_iter()
            .filter(move |f| self.contains(*f))
    }
}

impl fmt::Debug for ContextFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(ContextField::name))
            .finish()
    }
}

impl Default for ContextFields {
    fn default() -> Self {
        ContextFields::DEFAULT
    }
}

/// Whether the client's address (`CF-Connecting-IP`) is stored with each event (`IP_POLICY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpPolicy {
    /// `none` (the default): the address is read nowhere and stored nowhere.
    #[default]
    None,
    /// `truncated`: the network only, IPv4 to its /24 and IPv6 to its /48 (the last octet, or
    /// the last 80 bits, zeroed), the cut that Google Analytics' IP anonymisation makes: a /24
    /// is the smallest block routed between networks and a /48 the usual allocation to one
    /// site, so the address still tells the network and roughly where, not the household.
    Truncated,
    /// `full`: the whole address. It identifies a person in most jurisdictions' data
    /// protection law; set it only with a basis for keeping it.
    Full,
}

/// `EDGE_CONTEXT` and `IP_POLICY`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContextPolicy {
    /// `EDGE_CONTEXT`: comma-separated field names ([`ContextField::name`]), or `none`.
    /// Default [`ContextFields::DEFAULT`].
    pub fields: ContextFields,
    /// `IP_POLICY`: `none` (default), `truncated` or `full`.
    pub ip: IpPolicy,
}

/// Reads `EDGE_CONTEXT`: field names separated by commas (spaces and case ignored), or `none`.
/// Every unknown name is reported, with the names allowed.
pub fn parse_fields(raw: &str) -> Result<ContextFields, String> {
    let names: Vec<String> = raw
        .split(',')
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    if names.len() == 1 && names[0] == "none" {
        return Ok(ContextFields::NONE);
    }
    let mut set = ContextFields::NONE;
    let mut unknown = Vec::new();
    for name in &names {
        match ContextField::ALL.into_iter().find(|f| f.name() == name) {
            Some(field) => set.0 |= field.bit(),
            None => unknown.push(name.as_str()),
        }
    }
    if !unknown.is_empty() {
        let allowed: Vec<&str> = ContextField::ALL.iter().map(|f| f.name()).collect();
        return Err(format!(
            "unknown field(s) {}; allowed: {}, or none alone",
            unknown.join(", "),
            allowed.join(", ")
        ));
    }
    if set.is_empty() {
        return Err("names no field; write none for no context".into());
    }
    Ok(set)
}

/// Reads `IP_POLICY`.
pub fn parse_ip_policy(raw: &str) -> Result<IpPolicy, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "none" => Ok(IpPolicy::None),
        "truncated" => Ok(IpPolicy::Truncated),
        "full" => Ok(IpPolicy::Full),
        _ => Err("must be none, truncated or full".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_keeps_geography_to_the_city_and_the_network() {
        let names: Vec<&str> = ContextFields::DEFAULT
            .iter()
            .map(ContextField::name)
            .collect();
        assert_eq!(
            names,
            [
                "colo",
                "country",
                "region",
                "city",
                "continent",
                "timezone",
                "asn",
                "as_organization"
            ]
        );
        assert_eq!(ContextPolicy::default().ip, IpPolicy::None);
    }

    #[test]
    fn fields_are_named_in_any_case_with_spaces() {
        let set = parse_fields(" City ,latitude,LONGITUDE,, is_eu_country").expect("valid");
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [
                ContextField::City,
                ContextField::Latitude,
                ContextField::Longitude,
                ContextField::IsEuCountry
            ]
        );
        assert_eq!(parse_fields("none"), Ok(ContextFields::NONE));
        // Every name parses back to itself.
        for f in ContextField::ALL {
            assert_eq!(parse_fields(f.name()), Ok(ContextFields::of(&[f])));
        }
    }

    #[test]
    fn unknown_names_are_all_reported() {
        let e = parse_fields("city,ip,lat").expect_err("unknown");
        assert!(e.starts_with("unknown field(s) ip, lat;"), "{e}");
        assert!(e.contains("as_organization"), "{e}");
        // `none` means no field only on its own; an IP is never a cf field (IP_POLICY).
        assert!(parse_fields("none,city").is_err());
        assert!(parse_fields(",").is_err());
    }

    #[test]
    fn the_environment_sets_both_and_bad_values_fail_start_up_by_name() {
        use crate::config::tests::config_with;
        use crate::config::ConfigProblem;
        let c = config_with(&[]).expect("valid");
        assert_eq!(c.context, ContextPolicy::default());
        let c = config_with(&[
            ("EDGE_CONTEXT", "colo,latitude"),
            ("IP_POLICY", "truncated"),
        ])
        .expect("valid");
        assert_eq!(
            c.context,
            ContextPolicy {
                fields: ContextFields::of(&[ContextField::Colo, ContextField::Latitude]),
                ip: IpPolicy::Truncated,
            }
        );
        let e = config_with(&[("EDGE_CONTEXT", "town"), ("IP_POLICY", "some")]).expect_err("bad");
        let names: Vec<&str> =
            e.0.iter()
                .filter_map(|p| match p {
                    ConfigProblem::Invalid { name, .. } => Some(*name),
                    _ => None,
                })
                .collect();
        assert_eq!(names, ["EDGE_CONTEXT", "IP_POLICY"]);
    }

    #[test]
    fn ip_policies() {
        assert_eq!(parse_ip_policy("none"), Ok(IpPolicy::None));
        assert_eq!(parse_ip_policy("Truncated"), Ok(IpPolicy::Truncated));
        assert_eq!(parse_ip_policy("full"), Ok(IpPolicy::Full));
        assert!(parse_ip_policy("partial").is_err());
    }
}
