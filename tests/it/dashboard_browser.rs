//! The dashboard in a real browser: headless Chromium, driven through chromedriver (WebDriver),
//! opens `/dashboard` of the real `sentrypeer` binary (with `--api-token`) that the real
//! `sentrypeer-loadgen` has fed over UDP, TCP and TLS. Checked: the token prompt (a wrong token
//! keeps it, the right one opens the data), the totals equal the API's, the chart is drawn for
//! each window, the top lists equal the API's, a new event reaches the live feed within 5 s, pause
//! holds it back, hostile user agents show literally and run nothing, the detail view shows the
//! raw SIP message, and the browser's own log has no error.
//! `SENTRYPEER_UPDATE_SCREENSHOT=1 cargo test --test integration dashboard_browser` writes the
//! 1280x900 screenshot of the filled dashboard to `docs/img/dashboard.png` (the README's).
//!
//! Never: a fixed sleep as a wait (every wait polls the page or the API against a deadline);
//! traffic beyond loopback (Chromium runs with its background services off and a fresh profile).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use sentrypeer::config::limits::EVENT_FIELD_BYTES_MAX;

use crate::support::require::require_tool;
use crate::support::{DEADLINE, Launch, Node, free_port, http_get, udp_from, wait_until};

const TOKEN: &str = "dashboard-browser-token";

/// What attackers put in a User-Agent: markup, a handler, a URL scheme, a very long value,
/// invalid UTF-8 and an RTL override.
const HOSTILE_USER_AGENTS: [&[u8]; 6] = [
    b"<script>window.__pwned=1</script>",
    b"\"><img src=x onerror=window.__pwned=2>",
    b"javascript:alert(1)",
    b"bad\xff\xfe\xc3(utf8",
    "evil\u{202E}gpj.exe".as_bytes(),
    LONG_USER_AGENT,
];
const LONG_USER_AGENT: &[u8] = &[b'L'; 3000];

/// The longest a new event may take to reach the live feed (issue 19).
const FEED_WAIT: Duration = Duration::from_secs(5);

/// chromedriver on a free loopback port; killed on drop.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    fn start(binary: &Path, home: &Path) -> Self {
        let port = free_port();
        let log = std::fs::File::create(home.join("chromedriver.log")).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .env("HOME", home)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn chromedriver");
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        // It listens once it is ready (it keeps connections open, so `http_get` would hang).
        wait_until("chromedriver to listen", DEADLINE, || {
            std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok()
        });
        driver
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Chromium, headless, with everything that would reach beyond this machine switched off, a fresh
/// profile in `profile`, and its console kept for [`BrowserLog`].
fn capabilities(chromium: &Path, profile: &Path) -> Capabilities {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        &format!("--user-data-dir={}", profile.display()),
    ];
    let value = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": chromium, "args": args },
        "goog:loggingPrefs": { "browser": "ALL" },
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object"),
    }
}

/// chromedriver's `POST /session/{id}/se/log` for the `browser` log: the console messages,
/// CSP violations and failed loads since the last read.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (hyper::Method, Option<String>) {
        (
            hyper::Method::POST,
            Some(r#"{"type":"browser"}"#.to_owned()),
        )
    }
}

/// The browser log's entries of level SEVERE (errors) since the last read, as `source: message`.
async fn browser_errors(client: &Client) -> Vec<String> {
    let entries = client
        .issue_cmd(BrowserLog)
        .await
        .expect("read the browser log");
    entries
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["level"] == "SEVERE")
        .map(|entry| format!("{}: {}", entry["source"], entry["message"]))
        .collect()
}

/// Runs `script` (a function body that returns a value) in the page.
async fn js(client: &Client, script: &str) -> Value {
    client
        .execute(script, Vec::new())
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Polls `script` until it returns something other than `null`/`false`; fails after `limit`.
async fn wait_js(client: &Client, what: &str, script: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let value = js(client, script).await;
        if !value.is_null() && value != Value::Bool(false) {
            return value;
        }
        if Instant::now() >= deadline {
            let status = js(client, "return document.body.innerText.slice(0, 2000)").await;
            panic!("timed out after {limit:?} waiting for {what}; page text: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET path` on the API with the token, as JSON.
fn api_json(node: &Node, path: &str) -> Value {
    let (status, body) = http_get(node.api, path, Some(TOKEN)).expect("API answers");
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// An INVITE from `tag` with raw `user_agent` bytes (no UTF-8 check: that is the point).
fn invite(tag: &str, number: &str, user_agent: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "INVITE sip:{number}@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-{tag}\r\n\
         From: <sip:scanner@127.0.0.1>;tag={tag}\r\n\
         To: <sip:{number}@127.0.0.1>\r\n\
         Call-ID: {tag}@dashboard\r\n\
         CSeq: 1 INVITE\r\n\
         User-Agent: "
    )
    .into_bytes();
    out.extend_from_slice(user_agent);
    out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    out
}

/// Runs `sentrypeer-loadgen <transport>` against `target` to its end (a few hundred messages).
fn run_loadgen(transport: &str, target: SocketAddr, sources: &str, count: u32) -> bool {
    let Some(binary) = crate::support::loadgen_binary() else {
        return false;
    };
    let output = Command::new(binary)
        .arg(transport)
        .args(["--target", &target.to_string(), "--sources", sources])
        .args([
            "--source-sockets",
            "8",
            "--connections",
            "2",
            "--rate",
            "400",
        ])
        .args(["--count", &count.to_string(), "--duration", "15"])
        .args(["--numbers", "40", "--seed", "19", "--reply-wait", "0.2"])
        .stdin(Stdio::null())
        .output()
        .expect("run sentrypeer-loadgen");
    assert!(
        output.status.success(),
        "sentrypeer-loadgen {transport}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    true
}

#[test]
fn dashboard_browser_token_totals_feed_hostile_console() {
    let (Some(chromium), Some(chromedriver)) =
        (require_tool("chromium"), require_tool("chromedriver"))
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Launch::new(dir.path()).arg(&["--api-token", TOKEN]).start();
    let sources = "127.0.0.32/28";
    if !run_loadgen("udp", node.sip, sources, 900)
        || !run_loadgen("tcp", node.sip, sources, 200)
        || !run_loadgen("tls", node.tls, sources, 80)
    {
        return;
    }
    let driver = ChromeDriver::start(&chromedriver, dir.path());
    let profile = dir.path().join("chromium-profile");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities(&chromium, &profile))
            .connect(&driver.url)
            .await
            .expect("a chromedriver session");
        let result = drive(&client, &node).await;
        let _ = client.close().await;
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    });
}

/// The whole browser session; a failure is carried out so that the session is closed first.
async fn drive(client: &Client, node: &Node) -> Result<(), Box<dyn std::any::Any + Send>> {
    let steps = async {
        token_prompt(client, node).await;
        totals_equal_the_api(client, node).await;
        charts_and_lists(client, node).await;
        screenshot(client).await;
        live_feed_and_pause(client, node).await;
        hostile_user_agents(client, node).await;
        detail_view(client, node).await;
        phone_width(client).await;
        let errors = browser_errors(client).await;
        assert!(errors.is_empty(), "browser errors: {errors:#?}");
    };
    futures_lite::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(steps)).await
}

/// Runs `script` with `args` (as `arguments[0]`, ...) in the page.
async fn js_args(client: &Client, script: &str, args: Vec<Value>) -> Value {
    client
        .execute(script, args)
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn submit_token(client: &Client, token: &str) {
    let input = client
        .find(Locator::Id("token-input"))
        .await
        .expect("the token input");
    input.send_keys(token).await.expect("type the token");
    click(client, "#token-form button[type=submit]").await;
}

/// Without a token the page asks for one; a wrong one is refused and asked for again; the right
/// one opens the data. The token never shows in the URL.
async fn token_prompt(client: &Client, node: &Node) {
    let url = format!("http://{}/dashboard", node.api);
    client.goto(&url).await.expect("open the dashboard");
    let prompt = "return !document.getElementById('login').hidden \
                  && document.getElementById('main').hidden";
    wait_js(client, "the token prompt", prompt, DEADLINE).await;
    submit_token(client, "not-the-token").await;
    let refused = "const e = document.getElementById('token-error'); \
                   return !e.hidden && e.textContent.includes('refused') \
                   && !document.getElementById('login').hidden \
                   && document.getElementById('main').hidden";
    wait_js(client, "the wrong token refused", refused, DEADLINE).await;
    submit_token(client, TOKEN).await;
    let open = "return document.getElementById('login').hidden \
                && !document.getElementById('main').hidden \
                && document.getElementById('total-events').dataset.value !== undefined";
    wait_js(client, "the data after the right token", open, DEADLINE).await;
    let href = js(client, "return window.location.href").await;
    assert_eq!(href, Value::String(url), "the token must not be in the URL");
    // Chromium logs each refused request (401) as an error; nothing else may be there.
    let errors = browser_errors(client).await;
    assert!(
        !errors.is_empty()
            && errors
                .iter()
                .all(|e| e.contains("/dashboard/api/") && e.contains("401")),
        "expected only the refused API calls, got: {errors:#?}"
    );
}

/// Events, source IPs, called numbers (from the compat lists), verified IPs and the last hour
/// (from the summary), as the API says.
fn api_totals(node: &Node) -> Value {
    let summary = api_json(node, "/dashboard/api/summary");
    let events = api_json(node, "/events?limit=1")["events_total"].clone();
    assert_eq!(summary["events"], events, "summary and /events disagree");
    json!([
        events,
        api_json(node, "/ip-addresses?limit=1")["ip_addresses_total"],
        api_json(node, "/numbers?limit=1")["called_numbers_total"],
        summary["verified_ips"],
        summary["events_last_hour"],
    ])
}

/// After a reload (the token stays in the tab), the totals shown equal the API's, read before
/// and after the page's (equal, so nothing was committed in between).
async fn totals_equal_the_api(client: &Client, node: &Node) {
    let shown = "const v = id => document.getElementById(id).dataset.value; \
                 const all = ['total-events', 'total-ips', 'total-numbers', 'total-verified', \
                 'total-last-hour'].map(id => v(id)); \
                 return all.includes(undefined) ? null : all.map(Number)";
    let deadline = Instant::now() + DEADLINE;
    loop {
        let before = api_totals(node);
        client.refresh().await.expect("reload");
        let page = wait_js(client, "the totals after a reload", shown, DEADLINE).await;
        let after = api_totals(node);
        if before == after && page == before {
            assert!(
                before[0].as_u64() > Some(800),
                "the loadgen's events: {before}"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "page totals {page} != API totals {before} / {after}"
        );
    }
}

/// Each window draws one bar group per API point with non-empty bars and axis labels; then the
/// 1 h top lists show the API's keys and counts, in order.
async fn charts_and_lists(client: &Client, node: &Node) {
    for (window, caption) in [("7d", "7 days"), ("90d", "90 days"), ("1h", "last hour")] {
        let points = api_json(node, &format!("/dashboard/api/series?window={window}"))["points"]
            .as_array()
            .map_or(0, Vec::len);
        click(client, &format!("button[data-window='{window}']")).await;
        let drawn = "const caption = document.getElementById('chart-caption').textContent; \
                     const groups = document.querySelectorAll('#chart svg g.point').length; \
                     const bars = [...document.querySelectorAll('#chart svg rect')] \
                       .filter(r => Number(r.getAttribute('height')) > 0).length; \
                     const labels = [...document.querySelectorAll('#chart svg text')] \
                       .filter(t => t.textContent.trim()).length; \
                     return caption.includes(arguments[0]) && groups === arguments[1] \
                       && bars > 0 && labels >= 5 ? bars : null";
        let deadline = Instant::now() + DEADLINE;
        while js_args(client, drawn, vec![json!(caption), json!(points)])
            .await
            .is_null()
        {
            assert!(
                Instant::now() < deadline,
                "the {window} chart ({points} points)"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let shown = "return [...document.querySelectorAll( \
                   `.top[data-dimension='${arguments[0]}'] li:not(.other):not(.empty)`)] \
                 .map(li => [li.querySelector('.key').textContent, \
                   Number(li.querySelector('.count').textContent.replace(/,/g, ''))])";
    for dimension in ["ip", "number", "user_agent", "method", "transport"] {
        let top = api_json(
            node,
            &format!("/dashboard/api/top?dimension={dimension}&window=1h"),
        );
        let expected: Vec<Value> = top["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|item| json!([item["key"], item["count"]]))
            .collect();
        assert!(!expected.is_empty(), "no {dimension} items: {top}");
        let page = js_args(client, shown, vec![json!(dimension)]).await;
        assert_eq!(page, Value::Array(expected), "top {dimension}");
    }
}

/// The filled dashboard at 1280x900, as PNG; written to docs/img/dashboard.png when
/// `SENTRYPEER_UPDATE_SCREENSHOT=1`.
async fn screenshot(client: &Client) {
    // The window's size includes what is not page (none when headless, but be exact).
    let chrome = js(
        client,
        "return [window.outerWidth - window.innerWidth, \
                             window.outerHeight - window.innerHeight]",
    )
    .await;
    let extra = |i: usize| u32::try_from(chrome[i].as_u64().unwrap_or(0)).unwrap_or(0);
    client
        .set_window_size(1280 + extra(0), 900 + extra(1))
        .await
        .expect("resize");
    let fits = "return window.innerWidth === 1280 && window.innerHeight === 900";
    wait_js(client, "a 1280x900 viewport", fits, DEADLINE).await;
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let size = |at: usize| {
        png.get(at..at + 4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (width, height) = (size(16), size(20));
    assert!(
        (width, height) == (1280, 900),
        "screenshot {width}x{height}"
    );
    if std::env::var("SENTRYPEER_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/img/dashboard.png");
        std::fs::create_dir_all(path.parent().expect("docs/img")).expect("mkdir docs/img");
        std::fs::write(&path, &png).expect("write the screenshot");
        eprintln!("wrote {} ({width}x{height})", path.display());
    }
}

/// Whether the live feed shows a user agent equal to `arguments[0]`.
const FEED_HAS: &str = "return [...document.querySelectorAll('#feed tbody .ua')] \
                        .some(e => e.textContent === arguments[0])";

async fn wait_in_feed(client: &Client, what: &str, user_agent: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while js_args(client, FEED_HAS, vec![json!(user_agent)]).await != Value::Bool(true) {
        assert!(
            Instant::now() < deadline,
            "{what} not in the feed within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the API's newest events include one with this user agent (so it is committed).
fn api_has_user_agent(node: &Node, user_agent: &str) -> bool {
    api_json(node, "/events?limit=50")["events"]
        .as_array()
        .is_some_and(|events| events.iter().any(|e| e["sip_user_agent"] == user_agent))
}

/// A new event reaches the feed within 5 s of being sent; while paused, one stays out until
/// the feed is resumed.
async fn live_feed_and_pause(client: &Client, node: &Node) {
    let socket = udp_from([127, 0, 0, 40]);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let live = format!("live-feed-{stamp}");
    socket
        .send_to(&invite("live", "5550100", live.as_bytes()), node.sip)
        .expect("send");
    let sent = Instant::now();
    wait_in_feed(client, "the new event", &live, FEED_WAIT).await;
    assert!(sent.elapsed() <= FEED_WAIT, "{:?}", sent.elapsed());

    click(client, "#pause").await;
    let paused = "const b = document.getElementById('pause'); \
                  return b.getAttribute('aria-pressed') === 'true' && b.textContent === 'Resume'";
    wait_js(client, "the feed paused", paused, DEADLINE).await;
    let held = format!("paused-feed-{stamp}");
    socket
        .send_to(&invite("held", "5550100", held.as_bytes()), node.sip)
        .expect("send");
    wait_until("the held event in the API", DEADLINE, || {
        api_has_user_agent(node, &held)
    });
    let shown = js_args(client, FEED_HAS, vec![json!(held)]).await;
    assert_eq!(
        shown,
        Value::Bool(false),
        "a paused feed showed a new event"
    );
    click(client, "#pause").await;
    wait_in_feed(client, "the held event after resuming", &held, FEED_WAIT).await;
}

/// The hostile user agents as the API gives them (invalid UTF-8 replaced), once all committed.
fn hostile_as_the_api_says(node: &Node) -> Vec<String> {
    let mut found = Vec::new();
    wait_until("the hostile events in the API", DEADLINE, || {
        let events = api_json(node, "/events?limit=100");
        found = events["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["source_ip"] == "127.0.0.24")
            .filter_map(|e| e["sip_user_agent"].as_str().map(str::to_owned))
            .collect();
        found.len() == HOSTILE_USER_AGENTS.len()
    });
    for sent in HOSTILE_USER_AGENTS {
        // The store keeps a field's first EVENT_FIELD_BYTES_MAX bytes (the message whole).
        let kept = sent.get(..EVENT_FIELD_BYTES_MAX).unwrap_or(sent);
        let text = String::from_utf8_lossy(kept);
        assert!(found.contains(&text.into_owned()), "{found:.80?}");
    }
    found
}

/// Every hostile user agent shows in the feed as exactly its text; nothing it carries ran or
/// became an element.
async fn hostile_user_agents(client: &Client, node: &Node) {
    let socket = udp_from([127, 0, 0, 24]);
    for (index, user_agent) in HOSTILE_USER_AGENTS.iter().enumerate() {
        let request = invite(&format!("hostile{index}"), "5550199", user_agent);
        socket.send_to(&request, node.sip).expect("send");
    }
    for user_agent in hostile_as_the_api_says(node) {
        wait_in_feed(client, "a hostile user agent", &user_agent, DEADLINE).await;
        let title = "return [...document.querySelectorAll('#feed tbody .ua')] \
                     .some(e => e.getAttribute('title') === arguments[0])";
        let titled = js_args(client, title, vec![json!(user_agent)]).await;
        assert_eq!(titled, Value::Bool(true), "title of {user_agent:.40}");
    }
    let inert = "return { pwned: window.__pwned === undefined ? 'no' : String(window.__pwned), \
                 images: [...document.images].map(i => i.getAttribute('src')), \
                 scripts: [...document.scripts].map(s => s.getAttribute('src')), \
                 links: document.body.querySelectorAll( \
                   'a, [href], [onerror], [onclick], [onload], iframe, object, embed').length }";
    let state = js(client, inert).await;
    assert_eq!(
        state,
        json!({
            "pwned": "no",
            "images": ["/dashboard/icon.svg"],
            "scripts": ["/dashboard/app.js"],
            "links": 0,
        }),
        "an injected value became markup or ran"
    );
}

/// An IP of the feed opens its detail: the API's count, and its SIP messages as plain text
/// (the hostile ones included, literally); then a called number's detail opens too.
async fn detail_view(client: &Client, node: &Node) {
    let detail = api_json(node, "/dashboard/api/ip/127.0.0.24");
    click(
        client,
        "#feed button[data-detail-kind='ip'][data-detail-key='127.0.0.24']",
    )
    .await;
    let ready = "const d = document.getElementById('detail'); \
                 return d.open && d.dataset.state === 'ready' \
                 ? { title: document.getElementById('detail-title').textContent, \
                     facts: [...document.querySelectorAll('#detail-facts dd')].map(e => e.textContent), \
                     messages: [...document.querySelectorAll('#detail-events pre')].map(e => e.textContent) } \
                 : null";
    let shown = wait_js(client, "the IP's detail", ready, DEADLINE).await;
    assert_eq!(shown["title"], "Source IP 127.0.0.24");
    let count = detail["count"].as_u64().expect("count");
    assert!(count >= 6, "{detail}");
    assert!(
        shown["facts"]
            .as_array()
            .is_some_and(|facts| facts.contains(&json!(count.to_string()))),
        "the count {count} in {shown}"
    );
    let messages: Vec<&str> = shown["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let long = format!(
        "User-Agent: {}\r\n",
        String::from_utf8_lossy(LONG_USER_AGENT)
    );
    for line in [
        "User-Agent: <script>window.__pwned=1</script>\r\n",
        "User-Agent: \"><img src=x onerror=window.__pwned=2>\r\n",
        &long,
    ] {
        assert!(
            messages.iter().any(|m| m.contains(line)),
            "the raw message with {line:.60?} as text: {messages:.200?}"
        );
    }
    click(client, "#detail-close").await;
    let closed = "return !document.getElementById('detail').open";
    wait_js(client, "the detail closed", closed, DEADLINE).await;
    click(
        client,
        ".top[data-dimension='number'] button[data-detail-kind='number']",
    )
    .await;
    let number = wait_js(client, "a number's detail", ready, DEADLINE).await;
    assert!(
        number["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("Called number ")),
        "{number}"
    );
    click(client, "#detail-close").await;
    wait_js(client, "the detail closed", closed, DEADLINE).await;
}

/// At a phone's width the page does not scroll sideways (the feed's table scrolls in its box).
/// (Headless Chromium keeps windows at least 500 px wide: still the narrow layout, < 40rem.)
async fn phone_width(client: &Client) {
    client.set_window_size(390, 844).await.expect("resize");
    let fits = "return document.documentElement.scrollWidth <= window.innerWidth + 1 \
                && window.innerWidth < 640";
    wait_js(client, "the page to fit a phone's width", fits, DEADLINE).await;
}
