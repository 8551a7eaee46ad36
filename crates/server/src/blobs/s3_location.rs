//! Where an S3 blob store is: `--blob-store s3://BUCKET[/PREFIX]`, with the endpoint,
//! region and credentials from the standard AWS variables (`AWS_ENDPOINT_URL`,
//! `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_ALLOW_HTTP`), read by object_store's `AmazonS3Builder::from_env`. Requests are
//! path-style (`ENDPOINT/BUCKET/KEY`, what MinIO, Ceph and moto answer) unless
//! `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`; an `http://` endpoint allows plain HTTP.

use std::str::FromStr;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use super::BlobStoreError;

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take (a 20 MiB upload over a slow link included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Retries of a failed request (5xx, a dropped connection), all within `RETRY_TIMEOUT`.
const MAX_RETRIES: usize = 2;
const RETRY_TIMEOUT: Duration = Duration::from_secs(20);

/// A bucket and a key prefix (without slashes at either end; may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
    /// An endpoint URL that overrides `AWS_ENDPOINT_URL` (for callers that talk to
    /// several endpoints in one process, as tests do); None from the flag.
    pub endpoint: Option<String>,
}

impl S3Location {
    /// `bucket` with `prefix` at `endpoint`.
    pub fn at(endpoint: &str, bucket: &str, prefix: &str) -> Self {
        Self {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: Some(endpoint.to_string()),
        }
    }
}

impl FromStr for S3Location {
    type Err = BlobStoreError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BlobStoreError::BadLocation {
            given: text.to_string(),
        };
        let rest = text.strip_prefix("s3://").ok_or_else(bad)?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // S3's bucket rule: 3–63 of lowercase letters, digits, dots and hyphens.
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        let prefix = prefix.trim_matches('/');
        let prefix_ok = prefix
            .split('/')
            .all(|part| prefix.is_empty() || (!part.is_empty() && part != "." && part != ".."))
            && !prefix.contains(['\\', '?', '#']);
        if !bucket_ok || !prefix_ok {
            return Err(bad());
        }
        Ok(Self {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            endpoint: None,
        })
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.prefix.as_str() {
            "" => write!(formatter, "s3://{}", self.bucket),
            prefix => write!(formatter, "s3://{}/{prefix}", self.bucket),
        }
    }
}

impl S3Location {
    /// The key of blob `id` (a checked blob id): `<prefix>/<first two hex>/<id>`.
    pub fn key(&self, id: &str) -> String {
        match self.prefix.as_str() {
            "" => format!("{}/{id}", &id[..2]),
            prefix => format!("{prefix}/{}/{id}", &id[..2]),
        }
    }

    /// The key prefix every blob is under (None: the whole bucket).
    pub fn list_prefix(&self) -> Option<&str> {
        (!self.prefix.is_empty()).then_some(self.prefix.as_str())
    }

    /// A client builder from the AWS variables for this bucket, with bounded timeouts and
    /// retries (no request hangs), and the endpoint it talks to (for messages).
    pub fn builder(&self) -> (AmazonS3Builder, String) {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&self.bucket);
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let endpoint = builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .unwrap_or_else(|| {
                let region = builder
                    .get_config_value(&AmazonS3ConfigKey::Region)
                    .unwrap_or_else(|| "us-east-1".into());
                format!("https://s3.{region}.amazonaws.com")
            });
        let allow_http = endpoint.starts_with("http://")
            || std::env::var("AWS_ALLOW_HTTP")
                .is_ok_and(|value| value.eq_ignore_ascii_case("true"));
        let options = ClientOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: MAX_RETRIES,
            retry_timeout: RETRY_TIMEOUT,
        };
        // Client options replace those from the environment: allow_http is set after.
        let builder = builder
            .with_client_options(options)
            .with_allow_http(allow_http)
            .with_retry(retry);
        (builder, endpoint)
    }

    /// The longest one blob operation may take before it is given up: every attempt of
    /// a request with its connect and transfer time, plus the backoff between them.
    pub fn operation_limit() -> Duration {
        REQUEST_TIMEOUT + RETRY_TIMEOUT + CONNECT_TIMEOUT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buckets_and_prefixes() -> anyhow::Result<()> {
        let plain: S3Location = "s3://huatu-blobs".parse()?;
        assert_eq!(plain.prefix, "");
        assert_eq!(
            plain.key(&"ab".repeat(32)),
            format!("ab/{}", "ab".repeat(32))
        );
        let nested: S3Location = "s3://huatu-blobs/team/a/".parse()?;
        assert_eq!(nested.prefix, "team/a");
        assert_eq!(nested.to_string(), "s3://huatu-blobs/team/a");
        assert_eq!(
            nested.key(&"0f".repeat(32)),
            format!("team/a/0f/{}", "0f".repeat(32))
        );
        for bad in [
            "huatu",
            "s3://",
            "s3://AB",
            "s3://a_b",
            "s3://ok-bucket/x/../y",
            "gs://bucket",
        ] {
            assert!(bad.parse::<S3Location>().is_err(), "{bad}");
        }
        Ok(())
    }
}
