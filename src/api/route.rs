//! Request routing: the path and query of a request target in, a [`Route`] out.
//!
//! Pure (no I/O, no clock, no allocation beyond the decoded segments), so it can be fuzzed on its
//! own. Routes are exact paths: each `/`-separated segment is percent-decoded and must be UTF-8
//! (else [`RouteError::BadRequest`]); a `.` or `..` segment, an empty segment (`//`, a trailing
//! `/`) or an unknown path is [`RouteError::NotFound`]. The query is parsed only for the routes
//! that take parameters; unknown parameters are ignored, a bad value is a `BadRequest`.
//!
//! Never: panics on any input, matches a path by prefix, lets the query choose the route.
//!
//! Limits: `limit` is at most [`limits::API_PAGE_ITEMS_MAX`] (lists) or
//! [`limits::API_EVENTS_PAGE_ITEMS_MAX`] (events).

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::IpAddr;

use percent_encoding::percent_decode_str;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::limits;
use crate::event::timestamp::parse_timestamp;
use crate::store::PageCursor;
use crate::store::dashboard::{Dimension, Granularity};

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /`
    Root,
    /// `GET /health-check`
    HealthCheck,
    /// `GET /ip-addresses`
    IpAddresses(ListQuery),
    /// `GET /ip-addresses/{ip}`
    IpAddress(IpAddr),
    /// `GET /numbers`
    Numbers(ListQuery),
    /// `GET /numbers/{number}` (`\+?[0-9]+`)
    Number(String),
    /// `GET /events`
    Events(EventsQuery),
    /// `GET /metrics`
    Metrics,
    /// `GET /dashboard/api/...`: the dashboard's JSON (token-protected).
    DashboardApi(DashboardQuery),
    /// `GET /dashboard`, `/dashboard/app.js`, `/dashboard/app.css`, `/dashboard/icon.svg`: the
    /// embedded page (public: it holds no data, its API calls carry the token).
    DashboardAsset(DashboardAsset),
}

/// What a `/dashboard/api/` request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DashboardQuery {
    /// `summary`
    Summary,
    /// `series?window=`
    Series(Window),
    /// `top?dimension=&window=`
    Top(Dimension, Window),
    /// `feed?after=`: events after this event key (the newest when `None`).
    Feed(Option<u64>),
    /// `ip/{ip}`
    Ip(IpAddr),
    /// `number/{number}`
    Number(String),
}

/// A dashboard time window (`?window=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// `1h`: 60 minute buckets.
    Hour,
    /// `7d`: 168 hour buckets.
    Week,
    /// `90d`: 90 day buckets.
    Quarter,
}

impl Window {
    /// The `?window=` text.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hour => "1h",
            Self::Week => "7d",
            Self::Quarter => "90d",
        }
    }

    /// The buckets the window is made of.
    pub fn granularity(self) -> Granularity {
        match self {
            Self::Hour => Granularity::Minute,
            Self::Week => Granularity::Hour,
            Self::Quarter => Granularity::Day,
        }
    }

    /// How many buckets, the current one included.
    pub fn points(self) -> u64 {
        match self {
            Self::Hour => 60,
            Self::Week => 168,
            Self::Quarter => 90,
        }
    }
}

impl Route {
    /// Whether the route is open without the bearer token.
    pub fn is_public(&self) -> bool {
        matches!(self, Self::HealthCheck | Self::DashboardAsset(_))
    }
}

/// The dashboard's static files (served by `api::dashboard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DashboardAsset {
    /// `/dashboard`: the HTML page.
    Page,
    /// `/dashboard/app.js`
    Script,
    /// `/dashboard/app.css`
    Style,
    /// `/dashboard/icon.svg` (the page's icon, so that browsers do not ask for `/favicon.ico`).
    Icon,
}

/// Why a target has no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// No such resource (404 `{"error": "The requested resource could not be found."}`).
    NotFound,
    /// `/ip-addresses/{ip}` with something that is not an IP literal (400).
    InvalidIp,
    /// Bad percent-encoding, a path that is not UTF-8 or a bad parameter (400); says which.
    BadRequest(&'static str),
}

/// How a list is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The JSON object of compat.md §5 (default).
    Json,
    /// One value per line.
    Text,
    /// An `nft -f` script filling `inet sentrypeer` sets (IP addresses only).
    Nftables,
    /// An `ipset restore` script (IP addresses only).
    Ipset,
}

/// Parameters of `/ip-addresses` and `/numbers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Only items last seen at or after this (UTC ns).
    pub since_ns: Option<u64>,
    /// Items per page, 1 to [`limits::API_PAGE_ITEMS_MAX`].
    pub limit: usize,
    /// Continue after this page cursor (the `next` of the previous page).
    pub cursor: Option<PageCursor>,
    pub format: Format,
    /// `verified=true|false`; unset follows `--verified-only` (IP feeds only).
    pub verified: Option<bool>,
    /// `country=XX` / `asn=N`: only sources enriched with this country / AS (IP feeds only).
    pub source: SourceFilter,
}

/// `?country=` and `?asn=`: what an enriched source must match (`None`: anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceFilter {
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<[u8; 2]>,
    pub asn: Option<u32>,
}

impl SourceFilter {
    /// Whether no filter is asked for.
    pub fn is_empty(&self) -> bool {
        self.country.is_none() && self.asn.is_none()
    }

    /// Whether a source with this country and AS matches.
    pub fn matches(&self, country: Option<[u8; 2]>, asn: Option<u32>) -> bool {
        self.country.is_none_or(|want| country == Some(want))
            && self.asn.is_none_or(|want| asn == Some(want))
    }
}

/// Parameters of `/events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsQuery {
    /// Only events at or after this (UTC ns).
    pub since_ns: Option<u64>,
    /// Events, 1 to [`limits::API_EVENTS_PAGE_ITEMS_MAX`].
    pub limit: usize,
    /// `verified=true`: only events whose source was verified.
    pub verified: bool,
    /// `country=XX` / `asn=N`: only events whose source was enriched with these.
    pub source: SourceFilter,
}

/// Routes a request: `path` is the request path (starting with `/`), `query` the text after
/// `?` if any.
pub fn route(path: &str, query: Option<&str>) -> Result<Route, RouteError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(RouteError::NotFound);
    };
    let mut decoded: Vec<String> = Vec::with_capacity(4);
    for raw in rest.split('/') {
        if decoded.len() == 4 {
            return Err(RouteError::NotFound);
        }
        let text = decode_segment(raw)?;
        if text == "." || text == ".." {
            return Err(RouteError::NotFound);
        }
        decoded.push(text);
    }
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let found = match segments.as_slice() {
        [""] => Route::Root,
        ["health-check"] => Route::HealthCheck,
        ["ip-addresses"] => Route::IpAddresses(list_query(query, true)?),
        ["ip-addresses", ip] if !ip.is_empty() => {
            Route::IpAddress(ip.parse().map_err(|_| RouteError::InvalidIp)?)
        }
        ["numbers"] => Route::Numbers(list_query(query, false)?),
        ["numbers", number] if is_number(number) => Route::Number((*number).to_owned()),
        ["events"] => Route::Events(events_query(query)?),
        ["metrics"] => Route::Metrics,
        ["dashboard", "api", rest @ ..] => Route::DashboardApi(dashboard_query(rest, query)?),
        ["dashboard"] => Route::DashboardAsset(DashboardAsset::Page),
        ["dashboard", "app.js"] => Route::DashboardAsset(DashboardAsset::Script),
        ["dashboard", "app.css"] => Route::DashboardAsset(DashboardAsset::Style),
        ["dashboard", "icon.svg"] => Route::DashboardAsset(DashboardAsset::Icon),
        _ => return Err(RouteError::NotFound),
    };
    Ok(found)
}

/// The part of a `/dashboard/api/` path after `api`, and its query.
fn dashboard_query(rest: &[&str], query: Option<&str>) -> Result<DashboardQuery, RouteError> {
    let found = match rest {
        ["summary"] => DashboardQuery::Summary,
        ["series"] => DashboardQuery::Series(window(params(query)?.window.as_deref())?),
        ["top"] => {
            let params = params(query)?;
            let dimension = match params.dimension.as_deref() {
                Some(text) => {
                    Dimension::parse(text).ok_or(RouteError::BadRequest("unknown dimension"))?
                }
                None => return Err(RouteError::BadRequest("dimension is required")),
            };
            DashboardQuery::Top(dimension, window(params.window.as_deref())?)
        }
        ["feed"] => {
            let after = params(query)?
                .after
                .map(|text| {
                    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
                    digits
                        .then(|| text.parse::<u64>().ok())
                        .flatten()
                        .ok_or(RouteError::BadRequest("after is not a feed cursor"))
                })
                .transpose()?;
            DashboardQuery::Feed(after)
        }
        ["ip", ip] if !ip.is_empty() => {
            DashboardQuery::Ip(ip.parse().map_err(|_| RouteError::InvalidIp)?)
        }
        ["number", number] if is_number(number) => DashboardQuery::Number((*number).to_owned()),
        _ => return Err(RouteError::NotFound),
    };
    Ok(found)
}

/// `window`: `1h` (default), `7d` or `90d`.
fn window(text: Option<&str>) -> Result<Window, RouteError> {
    match text {
        None | Some("1h") => Ok(Window::Hour),
        Some("7d") => Ok(Window::Week),
        Some("90d") => Ok(Window::Quarter),
        Some(_) => Err(RouteError::BadRequest("window is not 1h, 7d or 90d")),
    }
}

/// Whether `text` is `\+?[0-9]+`.
pub fn is_number(text: &str) -> bool {
    let digits = text.strip_prefix('+').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Percent-decodes one path segment; every `%` must start a two-hex-digit escape.
fn decode_segment(raw: &str) -> Result<String, RouteError> {
    check_escapes(raw)?;
    percent_decode_str(raw)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| RouteError::BadRequest("the path is not UTF-8"))
}

fn check_escapes(raw: &str) -> Result<(), RouteError> {
    let bytes = raw.as_bytes();
    for (index, byte) in bytes.iter().enumerate() {
        if *byte != b'%' {
            continue;
        }
        let escape = bytes.get(index + 1..index + 3);
        if !escape.is_some_and(|pair| pair.iter().all(u8::is_ascii_hexdigit)) {
            return Err(RouteError::BadRequest("bad percent-encoding"));
        }
    }
    Ok(())
}

/// Decodes a query component (`+` is a space).
fn decode_component(raw: &str) -> Result<String, RouteError> {
    check_escapes(raw)?;
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| RouteError::BadRequest("the query is not UTF-8"))
}

/// The raw parameters we know; later duplicates win.
#[derive(Default)]
struct Params {
    since: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    format: Option<String>,
    verified: Option<String>,
    window: Option<String>,
    dimension: Option<String>,
    after: Option<String>,
    country: Option<String>,
    asn: Option<String>,
}

fn params(query: Option<&str>) -> Result<Params, RouteError> {
    let mut out = Params::default();
    let Some(query) = query else {
        return Ok(out);
    };
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode_component(key)?;
        let value = decode_component(value)?;
        let slot = match key.as_str() {
            "since" => &mut out.since,
            "limit" => &mut out.limit,
            "cursor" => &mut out.cursor,
            "format" => &mut out.format,
            "verified" => &mut out.verified,
            "window" => &mut out.window,
            "dimension" => &mut out.dimension,
            "after" => &mut out.after,
            "country" => &mut out.country,
            "asn" => &mut out.asn,
            _ => continue,
        };
        *slot = Some(value);
    }
    Ok(out)
}

/// `since`: RFC 3339 or the event_timestamp format; a time before 1970 means "everything", one
/// after 2554 "nothing".
fn since_ns(text: Option<&str>) -> Result<Option<u64>, RouteError> {
    text.map(|text| {
        parse_timestamp(text)
            .or_else(|| rfc3339_clamped(text))
            .ok_or(RouteError::BadRequest(
                "since is not an RFC 3339 or event_timestamp time",
            ))
    })
    .transpose()
}

/// An RFC 3339 time outside what u64 nanoseconds hold (before 1970, after 2554), clamped.
fn rfc3339_clamped(text: &str) -> Option<u64> {
    let nanos = OffsetDateTime::parse(text, &Rfc3339)
        .ok()?
        .unix_timestamp_nanos();
    Some(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX))
}

/// `verified`: `true` or `false` (or unset).
fn verified(text: Option<&str>) -> Result<Option<bool>, RouteError> {
    match text {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(RouteError::BadRequest("verified is not true or false")),
    }
}

/// `country` (two letters, any case) and `asn` (`64500` or `AS64500`).
fn source_filter(params: &Params) -> Result<SourceFilter, RouteError> {
    let country = params
        .country
        .as_deref()
        .map(|text| {
            crate::enrich::lookup::country_code(text).ok_or(RouteError::BadRequest(
                "country is not a two-letter ISO 3166 code",
            ))
        })
        .transpose()?;
    let asn = params
        .asn
        .as_deref()
        .map(|text| {
            crate::enrich::lookup::as_number(text)
                .ok_or(RouteError::BadRequest("asn is not an AS number"))
        })
        .transpose()?;
    Ok(SourceFilter { country, asn })
}

fn limit(text: Option<&str>, default: usize, max: usize) -> Result<usize, RouteError> {
    let Some(text) = text else {
        return Ok(default);
    };
    let bad = RouteError::BadRequest("limit is not a whole number from 1 to the page maximum");
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    match text.parse::<usize>() {
        Ok(value) if (1..=max).contains(&value) => Ok(value),
        _ => Err(bad),
    }
}

fn list_query(query: Option<&str>, ip_formats: bool) -> Result<ListQuery, RouteError> {
    let params = params(query)?;
    let format = match params.format.as_deref() {
        None | Some("json") => Format::Json,
        Some("text") => Format::Text,
        Some("nftables") if ip_formats => Format::Nftables,
        Some("ipset") if ip_formats => Format::Ipset,
        Some(_) => return Err(RouteError::BadRequest("unknown format")),
    };
    let cursor = params
        .cursor
        .as_deref()
        .map(|text| {
            PageCursor::from_hex(text)
                .filter(|_| !text.is_empty())
                .ok_or(RouteError::BadRequest("bad cursor"))
        })
        .transpose()?;
    Ok(ListQuery {
        since_ns: since_ns(params.since.as_deref())?,
        limit: limit(
            params.limit.as_deref(),
            limits::API_PAGE_ITEMS_MAX,
            limits::API_PAGE_ITEMS_MAX,
        )?,
        cursor,
        format,
        verified: match verified(params.verified.as_deref())? {
            Some(_) if !ip_formats => {
                return Err(RouteError::BadRequest(
                    "verified applies to source IPs only",
                ));
            }
            verified => verified,
        },
        source: match source_filter(&params)? {
            filter if !ip_formats && !filter.is_empty() => {
                return Err(RouteError::BadRequest(
                    "country and asn apply to source IPs and events only: numbers have no country",
                ));
            }
            filter => filter,
        },
    })
}

fn events_query(query: Option<&str>) -> Result<EventsQuery, RouteError> {
    let params = params(query)?;
    Ok(EventsQuery {
        since_ns: since_ns(params.since.as_deref())?,
        limit: limit(
            params.limit.as_deref(),
            limits::API_EVENTS_PAGE_ITEMS_DEFAULT,
            limits::API_EVENTS_PAGE_ITEMS_MAX,
        )?,
        verified: verified(params.verified.as_deref())? == Some(true),
        source: source_filter(&params)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn list(format: Format) -> ListQuery {
        ListQuery {
            since_ns: None,
            limit: limits::API_PAGE_ITEMS_MAX,
            cursor: None,
            format,
            verified: None,
            source: SourceFilter::default(),
        }
    }

    #[test]
    fn route_compat_paths() {
        assert_eq!(route("/", None), Ok(Route::Root));
        assert_eq!(route("/health-check", None), Ok(Route::HealthCheck));
        assert_eq!(
            route("/ip-addresses", None),
            Ok(Route::IpAddresses(list(Format::Json)))
        );
        assert_eq!(
            route("/numbers", None),
            Ok(Route::Numbers(list(Format::Json)))
        );
        assert_eq!(
            route("/ip-addresses/10.0.0.1", None),
            Ok(Route::IpAddress("10.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            route("/ip-addresses/2001:db8::1", None),
            Ok(Route::IpAddress("2001:db8::1".parse().unwrap()))
        );
        assert_eq!(
            route("/numbers/+441234", None),
            Ok(Route::Number("+441234".into()))
        );
        assert_eq!(
            route("/numbers/%2B0044", None),
            Ok(Route::Number("+0044".into()))
        );
        assert_eq!(route("/metrics", None), Ok(Route::Metrics));
    }

    #[test]
    fn route_dashboard_assets_are_public() {
        for (path, asset) in [
            ("/dashboard", DashboardAsset::Page),
            ("/dashboard/app.js", DashboardAsset::Script),
            ("/dashboard/app.css", DashboardAsset::Style),
            ("/dashboard/icon.svg", DashboardAsset::Icon),
        ] {
            let found = route(path, Some("x=1")).unwrap();
            assert_eq!(found, Route::DashboardAsset(asset), "{path}");
            assert!(found.is_public(), "{path}");
        }
        for path in [
            "/dashboard/",
            "/dashboard/index.html",
            "/dashboard/app.js/",
            "/dashboard/../dashboard",
            "/Dashboard",
        ] {
            assert_eq!(route(path, None), Err(RouteError::NotFound), "{path}");
        }
        assert!(!Route::Metrics.is_public());
    }

    #[test]
    fn route_query_ignored_for_matching() {
        assert_eq!(route("/", Some("format=nope")), Ok(Route::Root));
        assert_eq!(
            route("/health-check", Some("x=%zz")),
            Ok(Route::HealthCheck)
        );
    }

    #[test]
    fn route_not_found() {
        for path in [
            "",
            "*",
            "//",
            "/ip-addresses/",
            "/health-check/",
            "/numbers/12a",
            "/numbers/++1",
            "/numbers/",
            "/numbers/+",
            "/ip-addresses/1.2.3.4/x",
            "/a/b/c",
            "/../health-check",
            "/ip-addresses/..",
            "/%2e%2e/health-check",
            "/.",
            "/HEALTH-CHECK",
            "/ip-addressesx",
        ] {
            assert_eq!(route(path, None), Err(RouteError::NotFound), "{path}");
        }
    }

    #[test]
    fn route_invalid_ip() {
        for path in [
            "/ip-addresses/1.2.3",
            "/ip-addresses/999.1.1.1",
            "/ip-addresses/abc",
            "/ip-addresses/fe80::1%25eth0",
        ] {
            assert_eq!(route(path, None), Err(RouteError::InvalidIp), "{path}");
        }
    }

    #[test]
    fn route_bad_encoding() {
        for path in [
            "/%FF",
            "/ip-addresses/%",
            "/numbers/%4",
            "/%zz",
            "/numbers/%C3%28",
        ] {
            assert!(
                matches!(route(path, None), Err(RouteError::BadRequest(_))),
                "{path}"
            );
        }
    }

    #[test]
    fn route_list_parameters() {
        let since = "2025-11-28T10:40:00Z";
        let Ok(Route::IpAddresses(query)) = route(
            "/ip-addresses",
            Some(&format!(
                "since={since}&limit=5&cursor=00ff&format=nftables&x=1"
            )),
        ) else {
            panic!("no route");
        };
        assert_eq!(query.since_ns, parse_timestamp(since));
        assert_eq!(query.limit, 5);
        assert_eq!(query.cursor, PageCursor::from_hex("00ff"));
        assert_eq!(query.format, Format::Nftables);
        let Ok(Route::IpAddresses(query)) = route(
            "/ip-addresses",
            Some("since=2025-11-28+10%3A40%3A00.000000000&format=ipset"),
        ) else {
            panic!("no route");
        };
        assert_eq!(query.since_ns, parse_timestamp(since));
        assert_eq!(query.format, Format::Ipset);
        let Ok(Route::Numbers(query)) = route("/numbers", Some("format=text")) else {
            panic!("no route");
        };
        assert_eq!(query.format, Format::Text);
        let Ok(Route::Events(query)) = route("/events", Some("since=1969-12-31T23:59:59Z")) else {
            panic!("no route");
        };
        assert_eq!(query.since_ns, Some(0));
        let Ok(Route::Events(query)) = route("/events", Some("since=4530-08-28T23%3A50%3A43Z"))
        else {
            panic!("no route");
        };
        assert_eq!(query.since_ns, Some(u64::MAX));
    }

    #[test]
    fn route_limit_bounds() {
        let max = limits::API_PAGE_ITEMS_MAX;
        let at = format!("limit={max}");
        let over = format!("limit={}", max + 1);
        assert!(matches!(
            route("/numbers", Some(&at)),
            Ok(Route::Numbers(ListQuery { limit, .. })) if limit == max
        ));
        for query in [over.as_str(), "limit=0", "limit=-1", "limit=", "limit=1e3"] {
            assert!(
                matches!(
                    route("/numbers", Some(query)),
                    Err(RouteError::BadRequest(_))
                ),
                "{query}"
            );
        }
        let events_max = limits::API_EVENTS_PAGE_ITEMS_MAX;
        assert!(matches!(
            route("/events", None),
            Ok(Route::Events(EventsQuery { limit, .. }))
                if limit == limits::API_EVENTS_PAGE_ITEMS_DEFAULT
        ));
        assert!(route("/events", Some(&format!("limit={events_max}"))).is_ok());
        assert!(route("/events", Some(&format!("limit={}", events_max + 1))).is_err());
    }

    #[test]
    fn route_verified_parameter() {
        for (query, expected) in [
            (None, None),
            (Some("verified=true"), Some(true)),
            (Some("verified=false&format=nftables"), Some(false)),
        ] {
            let Ok(Route::IpAddresses(list)) = route("/ip-addresses", query) else {
                panic!("{query:?}");
            };
            assert_eq!(list.verified, expected, "{query:?}");
        }
        for (query, expected) in [(None, false), (Some("verified=true"), true)] {
            let Ok(Route::Events(events)) = route("/events", query) else {
                panic!("{query:?}");
            };
            assert_eq!(events.verified, expected, "{query:?}");
        }
        assert!(route("/numbers", Some("verified=true")).is_err());
    }

    #[test]
    fn route_country_and_asn_parameters() {
        let Ok(Route::IpAddresses(list)) = route("/ip-addresses", Some("country=nl&asn=AS64500"))
        else {
            panic!("no route");
        };
        assert_eq!(list.source.country, Some(*b"NL"));
        assert_eq!(list.source.asn, Some(64_500));
        let Ok(Route::Events(events)) = route("/events", Some("asn=64500")) else {
            panic!("no route");
        };
        assert_eq!(events.source.asn, Some(64_500));
        assert!(events.source.matches(None, Some(64_500)));
        assert!(!events.source.matches(None, None));
        for (path, query) in [
            ("/numbers", "country=NL"),
            ("/numbers", "asn=1"),
            ("/ip-addresses", "country=NLD"),
            ("/events", "country="),
            ("/events", "asn=x"),
            ("/events", "asn=4294967296"),
        ] {
            assert!(
                matches!(route(path, Some(query)), Err(RouteError::BadRequest(_))),
                "{path}?{query}"
            );
        }
    }

    #[test]
    fn route_bad_parameters() {
        for (path, query) in [
            ("/numbers", "format=nftables"),
            ("/numbers", "format=ipset"),
            ("/ip-addresses", "format=xml"),
            ("/ip-addresses", "format="),
            ("/ip-addresses", "since=yesterday"),
            ("/ip-addresses", "cursor=0g"),
            ("/ip-addresses", "cursor="),
            ("/ip-addresses", "limit=%FF"),
            ("/ip-addresses", "verified=yes"),
            ("/ip-addresses", "verified="),
            ("/events", "verified=TRUE"),
            ("/events", "since="),
        ] {
            assert!(
                matches!(route(path, Some(query)), Err(RouteError::BadRequest(_))),
                "{path}?{query}"
            );
        }
    }

    #[test]
    fn route_dashboard_api() {
        let dash = |path: &str, query: Option<&str>| route(path, query);
        assert_eq!(
            dash("/dashboard/api/summary", None),
            Ok(Route::DashboardApi(DashboardQuery::Summary))
        );
        assert_eq!(
            dash("/dashboard/api/series", None),
            Ok(Route::DashboardApi(DashboardQuery::Series(Window::Hour)))
        );
        assert_eq!(
            dash("/dashboard/api/series", Some("window=90d")),
            Ok(Route::DashboardApi(DashboardQuery::Series(Window::Quarter)))
        );
        assert_eq!(
            dash("/dashboard/api/top", Some("dimension=user_agent&window=7d")),
            Ok(Route::DashboardApi(DashboardQuery::Top(
                Dimension::UserAgent,
                Window::Week
            )))
        );
        assert_eq!(
            dash("/dashboard/api/feed", Some("after=42")),
            Ok(Route::DashboardApi(DashboardQuery::Feed(Some(42))))
        );
        assert_eq!(
            dash("/dashboard/api/feed", None),
            Ok(Route::DashboardApi(DashboardQuery::Feed(None)))
        );
        assert_eq!(
            dash("/dashboard/api/ip/10.0.0.1", None),
            Ok(Route::DashboardApi(DashboardQuery::Ip(
                "10.0.0.1".parse().unwrap()
            )))
        );
        assert_eq!(
            dash("/dashboard/api/number/%2B44", None),
            Ok(Route::DashboardApi(DashboardQuery::Number("+44".into())))
        );
        for (path, query) in [
            ("/dashboard/api/top", None),
            ("/dashboard/api/top", Some("dimension=colour")),
            ("/dashboard/api/series", Some("window=2h")),
            ("/dashboard/api/feed", Some("after=-1")),
            ("/dashboard/api/feed", Some("after=")),
            ("/dashboard/api/feed", Some("after=99999999999999999999")),
        ] {
            assert!(
                matches!(dash(path, query), Err(RouteError::BadRequest(_))),
                "{path}?{query:?}"
            );
        }
        assert_eq!(
            dash("/dashboard/api/ip/x", None),
            Err(RouteError::InvalidIp)
        );
        for path in [
            "/dashboard/api",
            "/dashboard/api/",
            "/dashboard/api/nope",
            "/dashboard/api/number/12a",
            "/dashboard/api/ip/1.2.3.4/x",
            "/dashboard/api/summary/",
        ] {
            assert_eq!(dash(path, None), Err(RouteError::NotFound), "{path}");
        }
    }

    #[test]
    fn route_is_number() {
        assert!(is_number("0"));
        assert!(is_number("+0044"));
        assert!(!is_number(""));
        assert!(!is_number("+"));
        assert!(!is_number("1 2"));
        assert!(!is_number("١٢")); // non-ASCII digits
    }

    proptest! {
        #[test]
        fn route_never_panics(path in ".{0,64}", query in proptest::option::of(".{0,64}")) {
            let _ = route(&path, query.as_deref());
        }

        #[test]
        fn route_never_panics_on_url_like(
            path in "(/[a-z0-9%.+:-]{0,12}){0,4}",
            query in proptest::option::of("([a-z]{0,6}=[a-zA-Z0-9%+:. -]{0,12}&?){0,4}"),
        ) {
            let _ = route(&path, query.as_deref());
        }
    }
}
