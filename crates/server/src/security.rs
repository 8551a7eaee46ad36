//! Who may talk to the server. With API keys, every `/v1` request carries a bearer key,
//! checked in constant time across all keys. Without keys the API is open to whoever can
//! reach the port, so the server defends what a browser could otherwise be tricked into:
//!
//! - DNS rebinding: a page on `evil.example` whose name later resolves to 127.0.0.1 sends
//!   `Host: evil.example`. Every request's Host must be a loopback name, the `--listen`
//!   address, `--public-url`'s host or an `--allowed-host`, else 403 `host_forbidden`.
//!   An IP literal cannot be rebound, so with `--listen 0.0.0.0` any IP literal passes.
//! - Cross-site requests (CSRF): `multipart/form-data` needs no CORS preflight, so any
//!   page could queue jobs. A state-changing request (not GET/HEAD/OPTIONS) whose
//!   `Origin` is neither this server nor a `--cors-origin`, or whose `Sec-Fetch-Site` says
//!   another site sent it, is refused with 403 `cross_site_forbidden`. Clients that are
//!   not browsers send neither header and pass.
//!
//! And a non-loopback `--listen` without a key is refused unless `--insecure-public`.
//! Every response carries the security headers (CSP with `frame-ancestors 'none'`,
//! X-Frame-Options, nosniff, Referrer-Policy); they are set in `routes::app`, which also applies the
//! guard (`routes::layers`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::config::ServerConfig;
use crate::error::{ApiError, ServerError};

/// The page's Content-Security-Policy: everything from this origin only, images also
/// from `blob:` (results are fetched with the key and shown as object URLs), and no
/// framing by anyone (clickjacking).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' blob: data:; \
     connect-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Refuses a listen address other hosts can reach when no API key guards it.
pub fn check_listen(config: &ServerConfig) -> Result<(), ServerError> {
    let ip = config.listen.ip();
    if ip.is_loopback() || !config.api_keys.is_empty() || config.insecure_public {
        return Ok(());
    }
    Err(ServerError::Config(format!(
        "refusing to listen on {} without an API key: anyone who can reach this address \
         could run jobs and read every prompt and image. Give --api-key or --api-key-file, \
         listen on a loopback address (127.0.0.1), or pass --insecure-public to serve \
         without a key anyway",
        config.listen
    )))
}

/// The host part of a Host header or URL authority, lowercased, without port or
/// IPv6 brackets: `Localhost:8080` → `localhost`, `[::1]:80` → `::1`.
fn host_name(authority: &str) -> String {
    let authority = authority.rsplit('@').next().unwrap_or(authority).trim();
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match authority.rsplit_once(':') {
            // a bare IPv6 address has several colons and no port
            Some((host, port))
                if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                host
            }
            _ => authority,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The authority (`host[:port]`) of a URL such as `https://huatu.example:8443/path`.
fn url_authority(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then_some(authority)
}

/// The Host names an open (keyless) server answers to.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    names: Vec<String>,
    addresses: Vec<IpAddr>,
    /// `--listen` on 0.0.0.0 or [::]: any IP literal (they cannot be rebound).
    any_address: bool,
}

impl HostPolicy {
    pub fn new(listen: SocketAddr, public_url: Option<&str>, allowed: &[String]) -> Self {
        let mut names = vec!["localhost".to_string()];
        names.extend(
            public_url
                .and_then(url_authority)
                .map(host_name)
                .filter(|name| !name.is_empty()),
        );
        names.extend(allowed.iter().map(|host| host_name(host)));
        Self {
            names,
            addresses: vec![listen.ip()],
            any_address: listen.ip().is_unspecified(),
        }
    }

    /// Whether a request with this Host header may be answered.
    pub fn allows(&self, host: &str) -> bool {
        let name = host_name(host);
        if let Ok(ip) = name.parse::<IpAddr>() {
            return ip.is_loopback() || self.any_address || self.addresses.contains(&ip);
        }
        name.ends_with(".localhost") || self.names.contains(&name)
    }
}

/// Whether a state-changing request came from a page of another site.
pub fn cross_site(headers: &HeaderMap, config: &ServerConfig) -> Option<String> {
    let origin = headers
        .get(header::ORIGIN)
        .map(|value| value.to_str().unwrap_or("(not text)"));
    let origin_allowed = origin.is_some_and(|origin| {
        config
            .cors_origins
            .iter()
            .any(|allowed| allowed == "*" || allowed == origin)
    });
    if origin_allowed {
        return None;
    }
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok());
    if let Some(site @ ("cross-site" | "same-site")) = fetch_site {
        return Some(format!("the browser says a {site} page sent it"));
    }
    let origin = origin?;
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let same_host = url_authority(origin)
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host) && origin != "null");
    let public = config
        .public_url
        .as_deref()
        .is_some_and(|url| url.eq_ignore_ascii_case(origin));
    (!same_host && !public).then(|| format!("it comes from the page {origin}"))
}

/// Bearer-key check for `/v1` as a tower-http `ValidateRequest`: the key given is
/// compared with every configured key, each through SHA-256, without an early exit.
///
/// Hand-written rather than the `subtle` crate: hashing first makes every comparison
/// 32 bytes whatever the key lengths (no length leak), and folding the XOR of every
/// digest pair into one accumulator visits every key on every request, so the time
/// says neither which key nor how many bytes matched. `black_box` keeps the optimiser
/// from turning the fold back into an early exit.
#[derive(Clone)]
pub struct ApiKeys {
    digests: Arc<Vec<[u8; 32]>>,
}

impl ApiKeys {
    pub fn new(keys: &[String]) -> Self {
        Self {
            digests: Arc::new(keys.iter().map(|key| digest(key.as_bytes())).collect()),
        }
    }

    /// Whether `given` is one of the keys, in time independent of which or how close.
    pub fn matches(&self, given: &str) -> bool {
        let given = digest(given.as_bytes());
        let mut found = 0u8;
        for known in self.digests.iter() {
            let difference = known
                .iter()
                .zip(&given)
                .fold(0u8, |difference, (a, b)| difference | (a ^ b));
            // 1 when equal, 0 otherwise, without a branch on the value
            let equal = (u16::from(std::hint::black_box(difference)).wrapping_sub(1) >> 8) as u8;
            found |= equal & 1;
        }
        found == 1
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl<B> tower_http::validate_request::ValidateRequest<B> for ApiKeys {
    type ResponseBody = Body;

    fn validate(&mut self, request: &mut axum::http::Request<B>) -> Result<(), Response> {
        if self.digests.is_empty() || request.method() == Method::OPTIONS {
            return Ok(());
        }
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::trim);
        let error = match given {
            None => ApiError::unauthorized(
                "this server needs an API key: send `Authorization: Bearer <key>`",
            ),
            Some(key) if self.matches(key) => return Ok(()),
            Some(_) => ApiError::unauthorized("the API key is not valid"),
        };
        let mut response = error.into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        Err(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_port_brackets_and_case() {
        assert_eq!(host_name("Localhost:8080"), "localhost");
        assert_eq!(host_name("[::1]:80"), "::1");
        assert_eq!(host_name("::1"), "::1");
        assert_eq!(host_name("huatu.example."), "huatu.example");
        assert_eq!(
            url_authority("https://a.example:8443/x"),
            Some("a.example:8443")
        );
    }

    #[test]
    fn hosts_allowed_by_default_and_by_flags() {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 8080));
        let policy = HostPolicy::new(
            loopback,
            Some("https://huatu.example/base"),
            &["art.lan:9000".into()],
        );
        for host in [
            "127.0.0.1:8080",
            "127.0.0.2",
            "[::1]:8080",
            "localhost:8080",
            "app.localhost",
            "huatu.example",
            "ART.lan",
        ] {
            assert!(policy.allows(host), "{host}");
        }
        for host in ["evil.example", "192.168.1.5:8080", "localhost.evil.example"] {
            assert!(!policy.allows(host), "{host}");
        }
        let everywhere = HostPolicy::new(SocketAddr::from(([0, 0, 0, 0], 80)), None, &[]);
        assert!(everywhere.allows("192.168.1.5:80"));
        assert!(!everywhere.allows("evil.example"));
    }

    #[test]
    fn every_key_matches_and_nothing_else() {
        let keys = ApiKeys::new(&["sk-one".into(), "sk-two-longer".into()]);
        assert!(keys.matches("sk-one"));
        assert!(keys.matches("sk-two-longer"));
        for wrong in ["", "sk-on", "sk-one ", "sk-two-longe", "sk-three"] {
            assert!(!keys.matches(wrong), "{wrong}");
        }
        assert!(!ApiKeys::new(&[]).matches(""));
    }

    #[test]
    fn a_public_listen_address_needs_a_key_or_the_flag() {
        let mut config = ServerConfig::new("/tmp/unused");
        config.listen = SocketAddr::from(([0, 0, 0, 0], 8080));
        let error = check_listen(&config).err().map(|error| error.to_string());
        assert!(
            error
                .as_deref()
                .unwrap_or_default()
                .contains("--insecure-public"),
            "{error:?}"
        );
        config.insecure_public = true;
        assert!(check_listen(&config).is_ok());
        config.insecure_public = false;
        config.api_keys = vec!["sk".into()];
        assert!(check_listen(&config).is_ok());
        config.api_keys.clear();
        config.listen = SocketAddr::from(([127, 0, 0, 1], 8080));
        assert!(check_listen(&config).is_ok());
    }
}
