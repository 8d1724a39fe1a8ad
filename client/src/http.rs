//! The hub over HTTP: where it is, GETs and POSTs of the API's JSON, every
//! page of a list, and how an answer becomes a [`Fail`].

use crate::fail::Fail;
use crate::output::problem_text;
use reqwest::Url;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;
use telltale_types::{List, Problem};

/// Where the hub is, and an HTTP client for it.
pub struct Hub {
    /// The `--hub` URL, without a trailing `/`.
    base: Url,
    /// Reused for every request (one connection pool); sends the token.
    http: reqwest::Client,
    /// `Bearer <token>`, for the WebSocket's handshake.
    pub(crate) authorization: Option<reqwest::header::HeaderValue>,
}

/// How long a connection to the hub may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Hub {
    pub fn new(text: &str, token: Option<&str>) -> Result<Hub, Fail> {
        let text = if text.contains("://") {
            text.to_owned()
        } else {
            format!("http://{text}")
        };
        let base = Url::parse(&text)
            .map_err(|e| Fail::Refused(format!("--hub {text:?} is not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(Fail::Refused(format!(
                "--hub {text:?} must be an http:// URL such as http://127.0.0.1:8080"
            )));
        }
        let authorization = match token.map(str::trim).filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => {
                let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
                    .map_err(|_| {
                        Fail::Refused("the token must be visible ASCII (tlt_...)".into())
                    })?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(v) = &authorization {
            headers.insert(reqwest::header::AUTHORIZATION, v.clone());
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(Duration::from_secs(60))
            // The WebSocket goes straight to the hub; so does HTTP.
            .no_proxy()
            .user_agent(concat!("telltale/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Fail::Failed(format!("cannot set up HTTP: {}", cause(&e))))?;
        Ok(Hub {
            base,
            http,
            authorization,
        })
    }

    /// The URL of `path` (which starts with `/`) under the base URL.
    pub fn url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        let joined = format!("{}{path}", u.path().trim_end_matches('/'));
        u.set_path(&joined);
        u.set_query(None);
        u
    }

    /// GETs `path?query`; returns the body and what it holds.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<(String, T), Fail> {
        let mut url = self.url(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let res = self.http.get(url.clone()).send().await;
        self.answer(&url, res).await
    }

    /// POSTs `body` as JSON to `path`; returns what the answer holds.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, Fail> {
        let url = self.url(path);
        let body = serde_json::to_string(body)
            .map_err(|e| Fail::Failed(format!("cannot write the request body: {e}")))?;
        let res = self
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        Ok(self.answer(&url, res).await?.1)
    }

    async fn answer<T: DeserializeOwned>(
        &self,
        url: &Url,
        res: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<(String, T), Fail> {
        let res = res.map_err(|e| match e.is_timeout() {
            true => self.unreachable("no answer in time"),
            false => self.unreachable(&cause(&e)),
        })?;
        let status = res.status();
        let text = res.text().await.map_err(|e| self.unreachable(&cause(&e)))?;
        if status.is_success() {
            return match serde_json::from_str::<T>(&text) {
                Ok(v) => Ok((text, v)),
                Err(e) if e.is_syntax() || e.is_eof() => Err(Fail::Failed(format!(
                    "{url} answered something that is not JSON"
                ))),
                Err(e) => Err(Fail::Failed(format!(
                    "{url} answered JSON this client cannot read: {e}"
                ))),
            };
        }
        if let Some(p) = hub_problem(text.as_bytes()) {
            return Err(Fail::Refused(problem_text(&p)));
        }
        // Not the hub's problem+json: a proxy in front of a hub that is
        // down, or another server on that port.
        if matches!(status.as_u16(), 502..=504) {
            return Err(self.unreachable(&format!("{url} answered {status}")));
        }
        let snippet: String = text.chars().take(200).collect();
        Err(Fail::Refused(format!("{url} answered {status}: {snippet}")))
    }

    pub fn unreachable(&self, why: &str) -> Fail {
        let base = self.base.as_str().trim_end_matches('/');
        Fail::Unreachable(format!("cannot reach the hub at {base}: {why}"))
    }

    /// Every page of a collection; each page's body goes to `pages`.
    pub async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        pages: &mut Vec<String>,
    ) -> Result<Vec<T>, Fail> {
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut q = query.to_vec();
            if let Some(c) = &next {
                q.push(("continue", c));
            }
            let (text, page) = self.get::<List<T>>(path, &q).await?;
            pages.push(text);
            items.extend(page.items);
            match page.next {
                Some(c) => next = Some(c),
                None => return Ok(items),
            }
        }
    }
}

/// The hub's problem+json in an error body: a JSON object with a `detail`
/// (another server's error page is not one).
pub fn hub_problem(body: &[u8]) -> Option<Problem> {
    serde_json::from_slice::<Problem>(body)
        .ok()
        .filter(|p| !p.detail.is_empty())
}

/// What went wrong at the bottom of an error (reqwest's own text names
/// the URL and little else): `Connection refused (os error 111)`.
pub fn cause(e: &dyn std::error::Error) -> String {
    let mut last = e;
    while let Some(s) = last.source() {
        last = s;
    }
    last.to_string()
}
