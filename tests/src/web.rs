//! A person at the web console, as HTTPS requests: the console's cookies
//! kept between requests (and checked for their flags), the login form
//! filled in with its CSRF token. For tests and the page benchmark.

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow, ensure};

use crate::harness::Collector;

/// One browser's session with the console of a serving collector: keeps
/// cookies like a browser and does not follow redirects.
#[derive(Debug)]
pub struct Browser {
    pub client: reqwest::Client,
    /// `https://localhost:PORT`.
    pub base: String,
    pub cookies: HashMap<String, String>,
}

impl Browser {
    /// A browser trusting the collector's CA, with no cookies yet.
    pub fn new(c: &Collector) -> Result<Browser> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let addr = c.web_addr()?;
        let ca = reqwest::Certificate::from_pem(&std::fs::read(c.dir().join("ca.pem"))?)?;
        let client = reqwest::Client::builder()
            .tls_certs_only([ca])
            .resolve("localhost", addr)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Browser {
            client,
            base: format!("https://localhost:{}", addr.port()),
            cookies: HashMap::new(),
        })
    }

    /// Status, `Location` and body; cookies kept.
    pub async fn send(&mut self, req: reqwest::RequestBuilder) -> Result<(u16, String, String)> {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let r = req.header("cookie", cookie.join("; ")).send().await?;
        for c in r.headers().get_all("set-cookie") {
            let c = c.to_str()?;
            let (k, v) = c
                .split(';')
                .next()
                .and_then(|kv| kv.split_once('='))
                .ok_or_else(|| anyhow!("bad Set-Cookie {c}"))?;
            ensure!(
                c.contains("HttpOnly") && c.contains("Secure") && c.contains("SameSite=Strict"),
                "cookie without its flags: {c}"
            );
            if c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.into(), v.into());
            }
        }
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .unwrap_or_default();
        Ok((status, location, r.text().await?))
    }

    /// GETs `path`: status, `Location` and body.
    pub async fn get(&mut self, path: &str) -> Result<(u16, String, String)> {
        let req = self.client.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    /// Logs in through the form; the status of the answer to the POST.
    pub async fn log_in(&mut self, name: &str, password: &str) -> Result<(u16, String, String)> {
        let (status, _, page) = self.get("/masuk").await?;
        ensure!(status == 200, "GET /masuk: {status}");
        let at = page
            .find("name=\"csrf\" value=\"")
            .context("no CSRF field on the login page")?
            + "name=\"csrf\" value=\"".len();
        let csrf = page[at..].split('"').next().unwrap_or_default().to_string();
        ensure!(csrf.len() == 64, "CSRF token {csrf:?}");
        let body = format!("nama={name}&sandi={password}&csrf={csrf}");
        let req = self
            .client
            .post(format!("{}/masuk", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(req).await
    }
}
