//! The upload path of `/v1/images/edits` and `/v1/agent`: axum's `Multipart` extractor
//! over a raw body, fields read as `routes::agent::read_form` reads them (which needs a
//! whole server state), image fields through the server's `decode_upload`.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart};
use axum::http::{header, Request};
use libfuzzer_sys::fuzz_target;

/// The boundary the seed corpus uses.
const BOUNDARY: &str = "huatufuzz";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|error| panic!("no runtime: {error}"))
    })
}

async fn read(data: Vec<u8>) {
    let Ok(request) = Request::post("/v1/images/edits")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(data))
    else {
        return;
    };
    let Ok(mut multipart) = Multipart::from_request(request, &()).await else {
        return;
    };
    while let Ok(Some(field)) = multipart.next_field().await {
        let name = field.name().unwrap_or_default().to_string();
        let Ok(bytes) = field.bytes().await else {
            return;
        };
        if ["image", "image[]", "mask", "original", "condition"].contains(&name.as_str()) {
            let _ = huatu_server::png_codec::decode_upload(&name, &bytes, 1024);
        } else {
            let _ = String::from_utf8(bytes.to_vec());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(read(data.to_vec()));
});
