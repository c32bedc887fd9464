//! One poll of the sensor's HTTP API: `/metrics`, `/ip-addresses?since=`, `/numbers?since=` and
//! `/events?limit=`, read with a time limit and a size cap, into a [`Snapshot`] or a [`Problem`].
//!
//! Never: waits longer than [`limits::TOP_HTTP_TIMEOUT`] per request; reads more than
//! [`limits::TOP_RESPONSE_BYTES_MAX`] of a body; follows a redirect; shows the token.

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use ureq::Agent;

use super::model::Problem;
use super::sanitize::neutralise;
use super::snapshot::{self, Counters, Snapshot};
use crate::config::{Secret, limits};

/// Where and how to ask.
pub struct Api {
    agent: Agent,
    base: String,
    token: Option<Secret>,
}

impl Api {
    /// The API at `base` (`http://host:port`, a trailing `/` is dropped), with `token` if set.
    pub fn new(base: &str, token: Option<Secret>) -> Self {
        let agent = Agent::config_builder()
            .timeout_global(Some(limits::TOP_HTTP_TIMEOUT))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(format!("sentrypeer-top/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self {
            agent,
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// Polls every route `top` shows; the lists cover the window before `now` (wall clock).
    pub fn poll(&self, now: OffsetDateTime) -> Result<Snapshot, Problem> {
        let window = Duration::from_secs(limits::TOP_WINDOW_S);
        let since = (now - window).format(&Rfc3339).unwrap_or_default();
        let counters = Counters::from_metrics(&self.get("/metrics")?);
        let list = |path: &str| -> Result<String, Problem> {
            let query = format!("{path}?since={since}&limit={}", limits::TOP_LIST_ITEMS);
            self.get(&query)
        };
        let top_ips =
            snapshot::ranked_ips(&list("/ip-addresses")?).map_err(bad("/ip-addresses"))?;
        let top_numbers = snapshot::ranked_numbers(&list("/numbers")?).map_err(bad("/numbers"))?;
        let events = format!("/events?since={since}&limit={}", limits::TOP_EVENTS_LIMIT);
        let top_user_agents =
            snapshot::ranked_user_agents(&self.get(&events)?).map_err(bad("/events"))?;
        Ok(Snapshot {
            counters,
            top_ips,
            top_numbers,
            top_user_agents,
        })
    }

    /// The body of `GET path`; a 404 of a list (nothing seen yet) is an empty list.
    fn get(&self, path: &str) -> Result<String, Problem> {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {}", token.expose()));
        }
        let mut response = request.call().map_err(|error| {
            Problem::Unreachable(neutralise(&error.to_string(), limits::TOP_STRING_CHARS_MAX))
        })?;
        let status = response.status().as_u16();
        let route = path.split('?').next().unwrap_or(path);
        match status {
            200 => {}
            401 => return Err(Problem::Unauthorized),
            404 if route != "/metrics" && route != "/events" => return Ok("{}".to_owned()),
            _ => return Err(Problem::Bad(format!("{route} answered HTTP {status}"))),
        }
        response
            .body_mut()
            .with_config()
            .limit(limits::TOP_RESPONSE_BYTES_MAX)
            .read_to_string()
            .map_err(|error| {
                let text = format!("{route}: {error}");
                Problem::Bad(neutralise(&text, limits::TOP_STRING_CHARS_MAX))
            })
    }
}

/// A body that is not what the API sends.
fn bad(route: &'static str) -> impl Fn(String) -> Problem {
    move |error| {
        Problem::Bad(neutralise(
            &format!("{route}: {error}"),
            limits::TOP_STRING_CHARS_MAX,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread;
    use std::time::Instant;

    use super::*;

    /// A loopback server that reads one request head and answers `head` then `body_bytes` of
    /// `x` (or, with `None`, never answers); returns its URL.
    fn server(answer: Option<(&'static str, usize)>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = [0_u8; 4096];
            let _ = stream.read(&mut head);
            match answer {
                Some((status, body_bytes)) => {
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {body_bytes}\r\nConnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let chunk = vec![b'x'; 64 * 1024];
                    let mut left = body_bytes;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        if stream.write_all(&chunk[..n]).is_err() {
                            return;
                        }
                        left -= n;
                    }
                }
                // Hold the connection open without a word until the client gives up.
                None => {
                    let _ = stream.read(&mut head);
                }
            }
        });
        url
    }

    #[test]
    fn top_fetch_401_is_unauthorized() {
        let api = Api::new(&server(Some(("401 Unauthorized", 0))), None);
        assert_eq!(
            api.poll(OffsetDateTime::now_utc()),
            Err(Problem::Unauthorized)
        );
    }

    #[test]
    fn top_fetch_caps_the_body() {
        let too_big = usize::try_from(limits::TOP_RESPONSE_BYTES_MAX).unwrap() + 1;
        let api = Api::new(&server(Some(("200 OK", too_big))), None);
        match api.poll(OffsetDateTime::now_utc()) {
            Err(Problem::Bad(why)) => assert!(why.starts_with("/metrics: "), "{why}"),
            other => panic!("a body over the cap must be refused: {other:?}"),
        }
    }

    #[test]
    fn top_fetch_times_out() {
        let api = Api::new(&server(None), None);
        let started = Instant::now();
        let outcome = api.poll(OffsetDateTime::now_utc());
        assert!(
            matches!(outcome, Err(Problem::Unreachable(_))),
            "{outcome:?}"
        );
        let took = started.elapsed();
        assert!(took >= limits::TOP_HTTP_TIMEOUT, "{took:?}");
        assert!(took < limits::TOP_HTTP_TIMEOUT * 3, "{took:?}");
    }

    #[test]
    fn top_fetch_nothing_listening_is_unreachable() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let api = Api::new(&format!("http://127.0.0.1:{port}"), None);
        let outcome = api.poll(OffsetDateTime::now_utc());
        assert!(
            matches!(outcome, Err(Problem::Unreachable(_))),
            "{outcome:?}"
        );
    }
}
