//! Reading one address's record: the country code and the autonomous system, in the shapes the
//! common free databases use, and the pure checks that turn their values into an
//! [`crate::event::Enrichment`]'s fields.
//!
//! Shapes accepted:
//! - country: `country.iso_code` (GeoLite2, DB-IP), else `country_code` (IPinfo Lite), else
//!   `registered_country.iso_code` (GeoLite2 networks without a located country);
//! - AS: `autonomous_system_number` + `autonomous_system_organization` (GeoLite2, DB-IP), else
//!   `asn` (`"AS13335"` or a number) + `as_name` (IPinfo Lite).
//!
//! Never: panics, allocates more than the AS organisation it keeps (at most
//! [`EVENT_FIELD_BYTES_MAX`] bytes), treats a value of the wrong type as anything but a miss.

use std::net::IpAddr;

use maxminddb::{LookupResult, PathElement, Reader};

use crate::config::limits::EVENT_FIELD_BYTES_MAX;

const COUNTRY_PATHS: [&[PathElement<'static>]; 3] = [
    &[PathElement::Key("country"), PathElement::Key("iso_code")],
    &[PathElement::Key("country_code")],
    &[
        PathElement::Key("registered_country"),
        PathElement::Key("iso_code"),
    ],
];

const ASN_KEYS: [&str; 2] = ["autonomous_system_number", "asn"];
const AS_ORG_KEYS: [&str; 2] = ["autonomous_system_organization", "as_name"];

/// The country of `ip`: an ISO 3166-1 alpha-2 code, upper case.
pub fn country<S: AsRef<[u8]>>(reader: &Reader<S>, ip: IpAddr) -> Option<[u8; 2]> {
    let found = record(reader, ip)?;
    COUNTRY_PATHS.iter().find_map(|path| {
        let text: Option<&str> = found.decode_path(path).ok().flatten();
        text.and_then(country_code)
    })
}

/// The autonomous system number and organisation of `ip`.
pub fn autonomous_system<S: AsRef<[u8]>>(
    reader: &Reader<S>,
    ip: IpAddr,
) -> (Option<u32>, Option<Box<str>>) {
    let Some(found) = record(reader, ip) else {
        return (None, None);
    };
    let number = ASN_KEYS.iter().find_map(|key| {
        let path = [PathElement::Key(key)];
        let number: Option<u32> = found.decode_path(&path).ok().flatten();
        number.or_else(|| {
            let text: Option<&str> = found.decode_path(&path).ok().flatten();
            text.and_then(as_number)
        })
    });
    let organisation = AS_ORG_KEYS.iter().find_map(|key| {
        let text: Option<&str> = found.decode_path(&[PathElement::Key(key)]).ok().flatten();
        text.and_then(as_organisation)
    });
    (number, organisation)
}

/// The record of `ip`, `None` when the database has none (or cannot look it up, e.g. an IPv6
/// address in an IPv4-only database).
fn record<S: AsRef<[u8]>>(reader: &Reader<S>, ip: IpAddr) -> Option<LookupResult<'_, S>> {
    reader.lookup(ip).ok().filter(LookupResult::has_data)
}

/// Two ASCII letters, upper-cased; anything else is not a country code.
pub fn country_code(text: &str) -> Option<[u8; 2]> {
    match text.as_bytes() {
        [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
        }
        _ => None,
    }
}

/// `AS13335`, `as13335` or `13335` as a number; `None` for anything else (0 included: it is
/// reserved and means "no AS" in some conversions).
pub fn as_number(text: &str) -> Option<u32> {
    let trimmed = text.trim();
    let digits = trimmed
        .strip_prefix("AS")
        .or_else(|| trimmed.strip_prefix("as"))
        .unwrap_or(trimmed);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|number| *number != 0)
}

/// The organisation, trimmed, at most [`EVENT_FIELD_BYTES_MAX`] bytes (cut at a character
/// boundary); `None` when blank.
pub fn as_organisation(text: &str) -> Option<Box<str>> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return None;
    }
    trimmed
        .get(..trimmed.floor_char_boundary(EVENT_FIELD_BYTES_MAX))
        .map(Box::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_country_code_two_letters_upper() {
        assert_eq!(country_code("NL"), Some(*b"NL"));
        assert_eq!(country_code("nl"), Some(*b"NL"));
        assert_eq!(country_code("N"), None);
        assert_eq!(country_code("NLD"), None);
        assert_eq!(country_code("N1"), None);
        assert_eq!(country_code("é"), None);
        assert_eq!(country_code(""), None);
    }

    #[test]
    fn lookup_as_number_forms() {
        assert_eq!(as_number("AS13335"), Some(13_335));
        assert_eq!(as_number("as64500"), Some(64_500));
        assert_eq!(as_number(" 64500 "), Some(64_500));
        assert_eq!(as_number("4294967295"), Some(u32::MAX));
        for bad in [
            "",
            "AS",
            "AS-1",
            "4294967296",
            "AS 1",
            "0",
            "AS0",
            "1e3",
            "+5",
        ] {
            assert_eq!(as_number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lookup_as_organisation_trimmed_and_capped() {
        assert_eq!(as_organisation(" Test Net "), Some(Box::from("Test Net")));
        assert_eq!(as_organisation("  "), None);
        let long = "é".repeat(EVENT_FIELD_BYTES_MAX);
        let kept = as_organisation(&long).unwrap_or_default();
        assert!(kept.len() <= EVENT_FIELD_BYTES_MAX && kept.len() >= EVENT_FIELD_BYTES_MAX - 1);
        assert!(kept.chars().all(|c| c == 'é'));
    }
}
