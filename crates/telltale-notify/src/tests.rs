//! Config tables, and deliveries over real loopback sockets to a tiny HTTP
//! receiver that records each request and answers as told.

use crate::send::{header_text, ntfy_body, ntfy_priority, ntfy_tags, ntfy_title};
use crate::*;
use hmac::{Hmac, Mac};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use NotificationKind::{Firing, Repeat, Resolved};

/// Parses a `[notify]` section the way the hub's config file holds it.
fn parse(section: &str) -> Result<NotifyConfig, String> {
    #[derive(serde::Deserialize)]
    struct HubFile {
        notify: NotifyConfig,
    }
    let file: HubFile = toml::from_str(section).map_err(|e| e.to_string())?;
    file.notify.check().map_err(|e| e.to_string())?;
    Ok(file.notify)
}

/// Parses sinks written as inline tables (`{ name = .., kind = .. }, ..`).
fn sinks(inline: &str) -> Result<NotifyConfig, String> {
    parse(&format!("[notify]\nsink = [{inline}]"))
}

fn sender(inline: &str) -> Sender {
    Sender::new(&sinks(inline).expect("valid")).expect("builds")
}

fn retry(reason: &str, after: Option<u64>) -> Outcome {
    let after = after.map(Duration::from_secs);
    Outcome::Retry {
        reason: reason.into(),
        after,
    }
}

fn failed(reason: &str) -> Outcome {
    Outcome::Failed {
        reason: reason.into(),
    }
}

fn notification(kind: NotificationKind, severity: &str) -> Notification {
    let state = if kind == Resolved {
        AlertState::Resolved
    } else {
        AlertState::Firing
    };
    Notification {
        alert_id: 42,
        rule: "freezer-warm".into(),
        device: "freezer-3".into(),
        metric: "temperature".into(),
        severity: severity.into(),
        state,
        kind,
        value: serde_json::json!(-9.5),
        summary: "freezer-3 at -9.5°C (limit -15)".into(),
        labels: [("site".to_owned(), "north".to_owned())].into(),
        at: "2025-06-01T12:00:00Z".into(),
        acknowledged: false,
        dedup_key: "42-firing-1".into(),
    }
}

#[test]
fn defaults_and_secrets_kept_out_of_debug() {
    let config = parse(
        r#"[notify]
        [[notify.sink]]
        name = "ops-webhook"
        kind = "webhook"
        url = "https://hooks.example.com/telltale"
        secret = "change-me"
        headers = { "X-Team" = "cold-chain" }
        [[notify.sink]]
        name = "phones"
        kind = "ntfy"
        url = "https://ntfy.sh/acme-freezers"
        token = "tk_abc""#,
    )
    .expect("valid");
    assert_eq!(config.initial_backoff(), Duration::from_secs(5));
    assert_eq!(config.max_backoff(), Duration::from_secs(600));
    assert_eq!(config.give_up_after(), Duration::from_secs(86_400));
    assert_eq!(
        (config.sink[0].timeout_secs, config.sink[1].kind),
        (10, SinkKind::Ntfy)
    );
    let shown = format!("{config:?}");
    for secret in ["change-me", "tk_abc", "cold-chain"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[test]
fn check_names_the_field() {
    // `w` is a webhook sink and `n` an ntfy sink, each with extra keys.
    let w = |extra: &str| {
        format!(r#"{{ name = "w", kind = "webhook", url = "https://h.example/x"{extra} }}"#)
    };
    let n = |extra: &str| {
        format!(r#"{{ name = "n", kind = "ntfy", url = "https://ntfy.sh/t"{extra} }}"#)
    };
    let long = "a".repeat(65);
    #[rustfmt::skip]
    let table = [
        (r#"{ name = "bad name", kind = "ntfy", url = "https://ntfy.sh/t" }"#.into(), r#"notify.sink "bad name": name: must be 1 to 64 of A-Z a-z 0-9 _ . -"#),
        (format!(r#"{{ name = "{long}", kind = "ntfy", url = "https://ntfy.sh/t" }}"#), "name: must be 1 to 64"),
        (r#"{ name = "w", kind = "webhook", url = "ftp://h.example/secret-path" }"#.into(), r#"notify.sink "w": url: must be an http or https URL"#),
        (r#"{ name = "w", kind = "webhook", url = "h.example/x" }"#.into(), "url: must be an http or https URL"),
        (r#"{ name = "n", kind = "ntfy", url = "https://ntfy.sh/" }"#.into(), r#"notify.sink "n": url: must be the topic's URL"#),
        (w(r#", severities = ["fatal"]"#), r#"severities: unknown severity "fatal" (one of critical, major"#),
        (w(", timeout_secs = 0"), r#"notify.sink "w": timeout_secs: must be 1 to 300"#),
        (w(r#", token = "tk""#), r#"notify.sink "w": token: only for kind = "ntfy""#),
        (w(r#", click_url = "https://x.example/""#), r#"click_url: only for kind = "ntfy""#),
        (n(r#", secret = "s""#), r#"notify.sink "n": secret: only for kind = "webhook""#),
        (n(r#", click_url = "not a url""#), "click_url: must be a URL"),
        (w(r#", secret = """#), "secret: must not be empty"),
        (n(r#", token = "tk\u00e9""#), "token: must be printable ASCII"),
        (w(r#", headers = { Content-Type = "x" }"#), "headers.Content-Type: set by telltale itself"),
        (w(r#", headers = { X-Telltale-Delivery = "x" }"#), "headers.X-Telltale-Delivery: set by"),
        (n(r#", headers = { Tags = "x" }"#), "headers.Tags: set by telltale itself"),
        (n(r#", token = "t", headers = { Authorization = "x" }"#), "headers.Authorization: set by"),
        (w(r#", headers = { "bad name" = "x" }"#), "headers.bad name: not a valid header name"),
        (w(r#", headers = { X-Key = "s3cr\nt" }"#), "headers.X-Key: value must be printable ASCII"),
        (format!("{}, {}", w(""), w("")), r#"notify.sink "w": name: used by another sink"#),
        // serde's own errors name the key
        (w(r#", colour = "red""#), "colour"),
        (r#"{ name = "e", kind = "email", url = "https://x.example/" }"#.into(), "email"),
        (r#"{ name = "e", kind = "ntfy" }"#.into(), "url"),
    ];
    #[rustfmt::skip]
    let sections = [
        ("initial_backoff_secs = 0", "notify.initial_backoff_secs: must be at least 1"),
        ("max_backoff_secs = 4", "notify.max_backoff_secs: must be at least initial_backoff_secs"),
        ("give_up_after_secs = 0", "notify.give_up_after_secs: must be at least 1"),
    ];
    let table = table.iter().map(|(sink, want)| (sinks(sink), *want));
    let sections = sections
        .iter()
        .map(|(line, want)| (parse(&format!("[notify]\n{line}")), *want));
    for (got, want) in table.chain(sections) {
        let got = got.expect_err(want);
        assert!(got.contains(want), "got:  {got}\nwant: {want}");
        assert!(
            !got.contains("s3cr") && !got.contains("secret-path"),
            "leaks: {got}"
        );
    }
    // Empty severities: such a sink only hears the rules that name it.
    sinks(&n(", severities = []")).expect("valid");
}

#[test]
fn sinks_for_routes_by_rule_then_severity() {
    let config = sinks(
        r#"{ name = "all", kind = "ntfy", url = "https://ntfy.sh/a" },
        { name = "pager", kind = "ntfy", url = "https://ntfy.sh/b", severities = ["critical", "major"] },
        { name = "named-only", kind = "webhook", url = "https://h.example/", severities = [] }"#,
    )
    .expect("valid");
    let own = ["named-only".to_owned(), "nowhere".to_owned()];
    let table: [(&[String], &str, &[&str]); 5] = [
        (&[], "critical", &["all", "pager"]),
        (&[], "major", &["all", "pager"]),
        (&[], "info", &["all"]),
        (&[], "nonsense", &["all"]),
        (&own, "info", &["named-only", "nowhere"]),
    ];
    for (rule_sinks, severity, want) in table {
        let got = config.sinks_for(rule_sinks, severity);
        assert_eq!(got, want, "{rule_sinks:?} {severity}");
    }
}

#[test]
fn ntfy_fields_by_kind_and_severity() {
    // (kind, severity, priority, tags)
    let table = [
        (Firing, "critical", 5, "rotating_light,critical"),
        (Repeat, "major", 4, "rotating_light,major"),
        (Firing, "minor", 3, "warning,minor"),
        (Firing, "warning", 3, "warning,warning"),
        (Firing, "info", 2, "information_source,info"),
        (Resolved, "critical", 3, "white_check_mark,critical"),
        (Resolved, "info", 2, "white_check_mark,info"),
    ];
    for (kind, severity, priority, tags) in table {
        let n = notification(kind, severity);
        assert_eq!(ntfy_priority(&n), priority, "{kind:?} {severity}");
        assert_eq!(ntfy_tags(&n), tags, "{kind:?} {severity}");
    }
    let mut n = notification(Repeat, "major");
    n.acknowledged = true;
    let title = "Still firing: freezer-warm on freezer-3 (acknowledged)";
    assert_eq!(ntfy_title(&n), title);
    let body = "freezer-3 at -9.5°C (limit -15)\nfreezer-3 temperature = -9.5\n\
                rule freezer-warm (major), alert 42, at 2025-06-01T12:00:00Z";
    assert_eq!(ntfy_body(&n), body);
    assert_eq!(header_text("Firing: r on d"), "Firing: r on d");
    assert_eq!(header_text("Kühl raum\n"), "=?UTF-8?Q?K=C3=BChl_raum=0A?=");
}

/// One request as the receiver saw it.
#[derive(Debug)]
struct Received {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        let mut found = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name));
        let first = found.next().map(|(_, v)| v.as_str());
        assert!(found.next().is_none(), "header {name} twice");
        first
    }
}

/// A receiver on 127.0.0.1:0 that answers every request with `answer`
/// (a raw HTTP/1.1 response), or never answers when `None`.
async fn receiver(answer: Option<&'static str>) -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                let Ok(received) = read_request(&mut stream).await else {
                    return;
                };
                let _ = tx.send(received);
                let Some(answer) = answer else {
                    return std::future::pending().await;
                };
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (base, rx)
}

async fn read_request(stream: &mut BufReader<TcpStream>) -> std::io::Result<Received> {
    let mut request_line = String::new();
    stream.read_line(&mut request_line).await?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await?;
        match line.trim_end().split_once(':') {
            Some((k, v)) => headers.push((k.to_owned(), v.trim().to_owned())),
            None => break,
        }
    }
    let request_line = request_line.trim_end().to_owned();
    let mut received = Received {
        request_line,
        headers,
        body: vec![],
    };
    let length = received
        .header("content-length")
        .and_then(|v| v.parse().ok());
    received.body.resize(length.unwrap_or(0), 0);
    stream.read_exact(&mut received.body).await?;
    Ok(received)
}

fn assert_headers(got: &Received, want: &[(&str, &str)]) {
    for (name, value) in want {
        assert_eq!(got.header(name), Some(*value), "header {name}");
    }
}

#[tokio::test]
async fn webhook_posts_signed_json() {
    let (base, mut rx) = receiver(Some("HTTP/1.1 204 No Content\r\n\r\n")).await;
    let sender = sender(&format!(
        r#"{{ name = "signed", kind = "webhook", url = "{base}/hook?k=v", secret = "s3cret",
              headers = {{ X-Team = "cold" }} }},
           {{ name = "plain", kind = "webhook", url = "{base}/" }}"#
    ));
    let n = notification(Firing, "critical");
    assert_eq!(sender.deliver("signed", &n).await, Outcome::Delivered);
    let got = rx.recv().await.expect("a request");
    assert_eq!(got.request_line, "POST /hook?k=v HTTP/1.1");
    #[rustfmt::skip]
    assert_headers(&got, &[("content-type", "application/json"), ("x-telltale-delivery", "42-firing-1"), ("x-team", "cold")]);
    let sent: Option<u64> = got
        .header("x-telltale-timestamp")
        .and_then(|t| t.parse().ok());
    assert!(sent.is_some_and(|t| t > 1_700_000_000), "{sent:?}");
    let body: serde_json::Value = serde_json::from_slice(&got.body).expect("json");
    assert_eq!(body, serde_json::to_value(&n).expect("json"));
    assert_eq!([&body["state"], &body["kind"]], ["firing", "firing"]);
    assert_eq!(
        serde_json::from_slice::<Notification>(&got.body).expect("decodes"),
        n
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").expect("key");
    mac.update(&got.body);
    let signature = got
        .header("x-telltale-signature")
        .and_then(|s| s.strip_prefix("sha256="));
    let signature = hex::decode(signature.expect("signed")).expect("hex");
    mac.verify_slice(&signature).expect("signature verifies");

    assert_eq!(sender.deliver("plain", &n).await, Outcome::Delivered);
    let got = rx.recv().await.expect("a request");
    assert_eq!(got.header("x-telltale-signature"), None);
    assert!(got.header("x-telltale-timestamp").is_some());
}

#[tokio::test]
async fn ntfy_posts_text_with_headers() {
    let (base, mut rx) = receiver(Some("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")).await;
    let sender = sender(&format!(
        r#"{{ name = "phones", kind = "ntfy", url = "{base}/acme-freezers", token = "tk_abc",
              click_url = "https://hub.example.com/" }}"#
    ));
    let n = notification(Firing, "critical");
    assert_eq!(sender.deliver("phones", &n).await, Outcome::Delivered);
    let got = rx.recv().await.expect("a request");
    assert_eq!(got.request_line, "POST /acme-freezers HTTP/1.1");
    #[rustfmt::skip]
    assert_headers(&got, &[
        ("title", "Firing: freezer-warm on freezer-3"), ("priority", "5"), ("tags", "rotating_light,critical"),
        ("click", "https://hub.example.com/"), ("authorization", "Bearer tk_abc"),
        ("x-telltale-delivery", "42-firing-1"), ("content-type", "text/plain; charset=utf-8"),
    ]);
    assert_eq!(String::from_utf8(got.body).expect("utf-8"), ntfy_body(&n));

    let mut n = notification(Resolved, "critical");
    n.device = "kühlraum".into();
    assert_eq!(sender.deliver("phones", &n).await, Outcome::Delivered);
    let got = rx.recv().await.expect("a request");
    #[rustfmt::skip]
    assert_headers(&got, &[
        ("title", "=?UTF-8?Q?Resolved:_freezer-warm_on_k=C3=BChlraum?="), ("priority", "3"), ("tags", "white_check_mark,critical"),
    ]);
}

#[tokio::test]
async fn answers_become_outcomes() {
    // (status line and headers, body, expected outcome)
    #[rustfmt::skip]
    let table = [
        ("202 Accepted", "", Outcome::Delivered),
        ("500 Internal Server Error", "", retry("http 500 Internal Server Error", None)),
        ("503 Service Unavailable\r\nretry-after: 30", "busy", retry("http 503 Service Unavailable: busy", Some(30))),
        ("429 Too Many Requests\r\nRetry-After: 7", "", retry("http 429 Too Many Requests", Some(7))),
        ("429 Too Many Requests\r\nRetry-After: Wed, 21 Oct 2015 07:28:00 GMT", "", retry("http 429 Too Many Requests", None)),
        ("408 Request Timeout", "", retry("http 408 Request Timeout", None)),
        ("400 Bad Request", "{\"error\":\"bad\ntopic\"}\r\n", failed(r#"http 400 Bad Request: {"error":"bad topic"}"#)),
        ("404 Not Found", "", failed("http 404 Not Found")),
        ("302 Found\r\nlocation: http://elsewhere.example/", "", failed("http 302 Found (redirects are not followed: set url to the final address)")),
    ];
    for (head, body, want) in table {
        let answer = format!(
            "HTTP/1.1 {head}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let (base, _rx) = receiver(Some(answer.leak())).await;
        let sender = sender(&format!(
            r#"{{ name = "w", kind = "webhook", url = "{base}/x", secret = "k" }}"#
        ));
        let got = sender.deliver("w", &notification(Firing, "major")).await;
        assert_eq!(got, want, "{head}");
    }
}

#[tokio::test]
async fn closed_port_is_retried_without_the_url() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let sender = sender(&format!(
        r#"{{ name = "w", kind = "webhook", url = "http://{addr}/secret-path" }}"#
    ));
    let got = sender.deliver("w", &notification(Firing, "major")).await;
    let Outcome::Retry {
        reason,
        after: None,
    } = got
    else {
        panic!("{got:?}")
    };
    assert!(reason.contains("Connection refused"), "{reason}");
    assert!(
        !reason.contains("secret-path") && !reason.contains(&addr.to_string()),
        "{reason}"
    );
}

#[tokio::test]
async fn timeout_is_retried() {
    let (base, mut rx) = receiver(None).await;
    let sender = sender(&format!(
        r#"{{ name = "n", kind = "ntfy", url = "{base}/t", timeout_secs = 1 }}"#
    ));
    let got = sender.deliver("n", &notification(Firing, "info")).await;
    assert_eq!(got, retry("timed out after 1s", None));
    assert!(rx.recv().await.is_some(), "the request arrived");
}

#[tokio::test]
async fn unknown_sink_and_bad_key_fail() {
    let sender = sender(r#"{ name = "w", kind = "webhook", url = "http://127.0.0.1:9/" }"#);
    let mut n = notification(Firing, "major");
    assert_eq!(
        sender.deliver("nope", &n).await,
        failed(r#"unknown sink "nope""#)
    );
    n.dedup_key = "line\nbreak".into();
    assert_eq!(
        sender.deliver("w", &n).await,
        failed("dedup_key is not printable ASCII")
    );
    assert_eq!(sender.clone().sinks_for(&[], "info"), ["w"]);
}
