//! One request in, one response out: size check, routing, CORS preflight, bearer token, method,
//! then the store read and the rendering.
//!
//! Look-ups (`/ip-addresses/{ip}`, `/numbers/{n}`) read LMDB on the API thread (a few
//! microseconds); lists and events run under `spawn_blocking` so a 100k-item list never stalls
//! the other connections.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq;

use super::dashboard;
use super::metrics::ApiMetrics;
use super::render::{self, VERSION};
use super::route::{DashboardAsset, EventsQuery, Format, ListQuery, Route, RouteError, route};
use crate::config::Secret;
use crate::config::limits::{API_URI_BYTES_MAX, IO_ERROR_LOG_INTERVAL};
use crate::event::timestamp::now_ns;
use crate::metrics::Render;
use crate::store::{Store, StoreError};

pub(crate) type Body = Full<Bytes>;

const NOT_FOUND: &str = "The requested resource could not be found.";
const INVALID: &str = "The request data was invalid";
const ALLOW: &str = "GET, HEAD, OPTIONS";
const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4";

/// What every request handler shares.
pub(crate) struct State {
    pub(crate) store: Store,
    pub(crate) renders: Vec<Arc<dyn Render>>,
    pub(crate) metrics: Arc<ApiMetrics>,
    pub(crate) token: Option<Secret>,
    /// `--verified-only`: the IP feeds list verified sources unless `?verified=false`.
    pub(crate) verified_only: bool,
    /// When a store error was last printed (ns), for rate limiting.
    pub(crate) error_logged_ns: AtomicU64,
}

/// hyper's service function.
pub(crate) async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let mut response = respond(&state, &request).await;
    if dashboard::is_dashboard_path(request.uri().path()) {
        dashboard::secure(response.headers_mut());
    }
    state
        .metrics
        .record(response.status().as_u16(), started.elapsed());
    Ok(response)
}

async fn respond(state: &Arc<State>, request: &Request<Incoming>) -> Response<Body> {
    let uri = request.uri();
    let target_bytes = uri.path().len() + uri.query().map_or(0, str::len);
    if target_bytes > API_URI_BYTES_MAX {
        return error(StatusCode::URI_TOO_LONG, "The request URI is too long");
    }
    let routed = route(uri.path(), uri.query());
    if request.method() == Method::OPTIONS {
        return match routed {
            // A preflight names the path; the real request's parameters are checked then.
            Ok(_) | Err(RouteError::BadRequest(_)) => preflight(),
            Err(failure) => route_error(failure),
        };
    }
    let public = routed.as_ref().is_ok_and(Route::is_public);
    if !public && !authorized(state.token.as_ref(), request) {
        let mut response = error(StatusCode::UNAUTHORIZED, "Unauthorized");
        set(&mut response, header::WWW_AUTHENTICATE, "Bearer");
        return response;
    }
    let found = match routed {
        Ok(found) => found,
        Err(failure) => return route_error(failure),
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
        set(&mut response, header::ALLOW, ALLOW);
        return response;
    }
    match serve(state, found).await {
        Ok(response) => response,
        Err(failure) => {
            state.metrics.store_errors_total.inc();
            log_store_error(state, &failure);
            error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
        }
    }
}

async fn serve(state: &Arc<State>, found: Route) -> Result<Response<Body>, StoreError> {
    Ok(match found {
        Route::Root => json(StatusCode::OK, render::object("status", "OK")),
        Route::HealthCheck => json(StatusCode::OK, render::health_check()),
        Route::IpAddress(ip) => ip_address(&state.store, ip)?,
        Route::Number(number) => phone_number(&state.store, &number)?,
        Route::IpAddresses(query) => {
            blocking(state, move |s| {
                ip_addresses(&s.store, &query, s.verified_only)
            })
            .await?
        }
        Route::Numbers(query) => blocking(state, move |s| numbers(&s.store, &query)).await?,
        Route::Events(query) => blocking(state, move |s| events(&s.store, query)).await?,
        Route::DashboardApi(query) => {
            blocking(state, move |s| {
                super::dashboard_api::serve(&s.store, &query, now_ns())
                    .map(|(status, body)| json(status, body))
            })
            .await?
        }
        Route::DashboardAsset(asset) => dashboard_asset(asset),
        Route::Metrics => {
            let mut out = String::with_capacity(16 * 1024);
            for part in &state.renders {
                part.render(&mut out);
            }
            state.metrics.render(&mut out);
            if let Ok(totals) = state.store.read().and_then(|reader| reader.totals()) {
                let help = "Source IPs in the store that proved a two-way exchange.";
                crate::metrics::write_gauge(
                    &mut out,
                    "store_verified_ips",
                    help,
                    totals.verified_ips,
                );
            }
            with_type(StatusCode::OK, PROMETHEUS, out)
        }
    })
}

/// Runs a store read on tokio's blocking pool.
async fn blocking(
    state: &Arc<State>,
    work: impl FnOnce(&State) -> Result<Response<Body>, StoreError> + Send + 'static,
) -> Result<Response<Body>, StoreError> {
    let state = Arc::clone(state);
    match tokio::task::spawn_blocking(move || work(&state)).await {
        Ok(result) => result,
        // The closure panicked or the runtime is shutting down.
        Err(_) => Ok(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is shutting down",
        )),
    }
}

fn ip_address(store: &Store, ip: IpAddr) -> Result<Response<Body>, StoreError> {
    let reader = store.read()?;
    let seen = reader.source_ip(ip)?;
    let asn = seen.and_then(|seen| seen.source).and_then(|tag| tag.asn);
    let as_org = asn.map(|asn| reader.as_org(asn)).transpose()?.flatten();
    drop(reader);
    Ok(match seen {
        Some(seen) => json(StatusCode::OK, render::ip_found(&seen, as_org.as_deref())),
        None => message(StatusCode::NOT_FOUND, "No bad actor found"),
    })
}

fn phone_number(store: &Store, number: &str) -> Result<Response<Body>, StoreError> {
    let seen = store.read()?.called_number(number.as_bytes())?;
    Ok(match seen {
        Some(_) => json(StatusCode::OK, render::object("phone_number_found", number)),
        None => message(StatusCode::NOT_FOUND, "No phone number found"),
    })
}

fn ip_addresses(
    store: &Store,
    query: &ListQuery,
    verified_only: bool,
) -> Result<Response<Body>, StoreError> {
    let reader = store.read()?;
    let verified = query.verified.unwrap_or(verified_only);
    let totals = reader.totals()?;
    let total = if verified {
        totals.verified_ips
    } else {
        totals.source_ips
    };
    let source = query.source;
    let wanted = move |seen: &crate::store::IpSeen| {
        source.is_empty()
            || seen
                .source
                .is_some_and(|tag| source.matches(tag.country, tag.asn))
    };
    let page = reader.source_ips_of(
        query.since_ns,
        verified,
        &wanted,
        query.limit,
        query.cursor.as_ref(),
    )?;
    drop(reader);
    let ips = || page.items.iter().map(|item| item.ip);
    let mut response = match query.format {
        Format::Json if total == 0 => message(StatusCode::NOT_FOUND, "No bad actors found"),
        Format::Json => json(
            StatusCode::OK,
            render::ip_list_json(total, &page.items, page.next.as_ref()),
        ),
        Format::Text => with_type(StatusCode::OK, TEXT, render::lines(ips())),
        Format::Nftables => {
            let list: Vec<IpAddr> = ips().collect();
            with_type(StatusCode::OK, TEXT, render::nftables(&list))
        }
        Format::Ipset => {
            let list: Vec<IpAddr> = ips().collect();
            with_type(StatusCode::OK, TEXT, render::ipset(&list))
        }
    };
    set_next(&mut response, page.next.as_ref());
    Ok(response)
}

fn numbers(store: &Store, query: &ListQuery) -> Result<Response<Body>, StoreError> {
    let reader = store.read()?;
    let total = reader.totals()?.called_numbers;
    let page = reader.called_numbers(query.since_ns, query.limit, query.cursor.as_ref())?;
    drop(reader);
    let mut response = match query.format {
        Format::Json if total == 0 => message(StatusCode::NOT_FOUND, "No phone numbers found"),
        Format::Json => json(
            StatusCode::OK,
            render::number_list_json(total, &page.items, page.next.as_ref()),
        ),
        // The route only lets `json` and `text` through for numbers.
        Format::Text | Format::Nftables | Format::Ipset => with_type(
            StatusCode::OK,
            TEXT,
            render::lines(page.items.iter().map(|item| &item.number)),
        ),
    };
    set_next(&mut response, page.next.as_ref());
    Ok(response)
}

fn events(store: &Store, query: EventsQuery) -> Result<Response<Body>, StoreError> {
    let reader = store.read()?;
    let total = reader.totals()?.events;
    let source = query.source;
    let wanted =
        move |header: &crate::store::codec::Header| source.matches(header.country, header.asn);
    let events = reader.recent_events_of(query.since_ns, query.verified, &wanted, query.limit)?;
    drop(reader);
    Ok(json(StatusCode::OK, render::events_json(total, &events)))
}

/// A dashboard file, embedded in the binary; revalidated on each load (`no-cache`).
fn dashboard_asset(asset: DashboardAsset) -> Response<Body> {
    let (content_type, body) = dashboard::asset(asset);
    let mut response = with_type(StatusCode::OK, content_type, String::new());
    *response.body_mut() = Full::new(Bytes::from_static(body.as_bytes()));
    set(&mut response, header::CACHE_CONTROL, "no-cache");
    response
}

/// Whether the request carries `Authorization: Bearer <token>` (always, when no token is set).
fn authorized(token: Option<&Secret>, request: &Request<Incoming>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    let (scheme, rest) = value.split_at_checked(7).unwrap_or((value, b""));
    if !scheme.eq_ignore_ascii_case(b"Bearer ") {
        return false;
    }
    bool::from(rest.ct_eq(token.expose().as_bytes()))
}

fn log_store_error(state: &State, failure: &StoreError) {
    let now = now_ns();
    let last = state.error_logged_ns.load(Ordering::Relaxed);
    let interval = u64::try_from(IO_ERROR_LOG_INTERVAL.as_nanos()).unwrap_or(u64::MAX);
    if last == 0 || now.saturating_sub(last) >= interval {
        state.error_logged_ns.store(now.max(1), Ordering::Relaxed);
        eprintln!("sentrypeer: API store read failed: {failure}");
    }
}

/// A response with the headers every response carries.
fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert("x-powered-by", HeaderValue::from_static("SentryPeer"));
    headers.insert("x-sentrypeer-version", HeaderValue::from_static(VERSION));
    response
}

fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    with_type(status, JSON, body)
}

fn message(status: StatusCode, text: &str) -> Response<Body> {
    json(status, render::object("message", text))
}

fn error(status: StatusCode, text: &str) -> Response<Body> {
    json(status, render::object("error", text))
}

fn route_error(failure: RouteError) -> Response<Body> {
    match failure {
        RouteError::NotFound => error(StatusCode::NOT_FOUND, NOT_FOUND),
        RouteError::InvalidIp => error(StatusCode::BAD_REQUEST, INVALID),
        RouteError::BadRequest(reason) => bad_request(reason),
    }
}

fn bad_request(reason: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": INVALID, "reason": reason }).to_string();
    json(StatusCode::BAD_REQUEST, body)
}

fn preflight() -> Response<Body> {
    let mut response = with_type(StatusCode::NO_CONTENT, JSON, String::new());
    set(&mut response, header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW);
    set(
        &mut response,
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        "Authorization, Content-Type",
    );
    set(&mut response, header::ACCESS_CONTROL_MAX_AGE, "86400");
    response
}

fn set(response: &mut Response<Body>, name: header::HeaderName, value: &'static str) {
    response
        .headers_mut()
        .insert(name, HeaderValue::from_static(value));
}

/// Text formats carry the next page's cursor in a header (JSON has it in the body too).
fn set_next(response: &mut Response<Body>, next: Option<&crate::store::PageCursor>) {
    if let Some(value) = next.and_then(|next| HeaderValue::from_str(&next.to_hex()).ok()) {
        response
            .headers_mut()
            .insert("x-sentrypeer-next-cursor", value);
    }
}
