//! `api::route::route` on arbitrary request targets.
//!
//! Input: byte 0 picks how the rest (lossy UTF-8) becomes `(path, query)`: split at the first
//! `?`; the whole text as the path with no query; or `/` + the text, split at the first `?`.
//!
//! Invariants: never panics; deterministic; only a path starting with `/` routes; the query never
//! chooses the route (a path error without a query is the same error with any query, and a route
//! found with a query is the same kind of route without one); limits and numbers are within their
//! bounds; only the health check and the dashboard's static files are public; `/` is the root.
#![no_main]

use std::mem::discriminant;

use libfuzzer_sys::fuzz_target;
use sentrypeer::api::route::{Route, RouteError, is_number, route};
use sentrypeer::config::limits::{API_EVENTS_PAGE_ITEMS_MAX, API_PAGE_ITEMS_MAX};
use sentrypeer::store::PageCursor;

fn check_cursor(cursor: Option<&PageCursor>) {
    if let Some(cursor) = cursor {
        let hex = cursor.to_hex();
        assert!(!hex.is_empty());
        assert_eq!(PageCursor::from_hex(&hex).as_ref(), Some(cursor));
    }
}

fn check_route(path: &str, found: &Route) {
    assert!(path.starts_with('/'), "routed a path without a leading /");
    assert_eq!(
        found.is_public(),
        matches!(found, Route::HealthCheck | Route::DashboardAsset(_))
    );
    match found {
        Route::Root => assert_eq!(path, "/"),
        Route::IpAddresses(query) | Route::Numbers(query) => {
            assert!((1..=API_PAGE_ITEMS_MAX).contains(&query.limit));
            check_cursor(query.cursor.as_ref());
        }
        Route::Number(number) => assert!(is_number(number)),
        Route::Events(query) => assert!((1..=API_EVENTS_PAGE_ITEMS_MAX).contains(&query.limit)),
        Route::DashboardAsset(_) => assert!(path.starts_with("/dashboard")),
        Route::DashboardApi(_) => assert!(path.starts_with("/dashboard/api/")),
        Route::HealthCheck | Route::IpAddress(_) | Route::Metrics => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let owned;
    let (path, query) = match mode % 3 {
        0 => text
            .split_once('?')
            .map_or((&*text, None), |(p, q)| (p, Some(q))),
        1 => (&*text, None),
        _ => {
            owned = format!("/{text}");
            owned
                .split_once('?')
                .map_or((&*owned, None), |(p, q)| (p, Some(q)))
        }
    };

    let result = route(path, query);
    assert_eq!(route(path, query), result, "not deterministic");
    let without_query = route(path, None);
    match (&without_query, &result) {
        (Err(error), _) => assert_eq!(&result, &Err(*error), "the query changed a path error"),
        (Ok(plain), Ok(found)) => {
            assert_eq!(
                discriminant(plain),
                discriminant(found),
                "the query chose the route"
            );
            check_route(path, plain);
            check_route(path, found);
        }
        (Ok(_), Err(error)) => {
            assert!(
                matches!(error, RouteError::BadRequest(_)),
                "query error {error:?}"
            );
        }
    }
});
