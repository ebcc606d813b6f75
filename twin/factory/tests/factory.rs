//! The factory's routes through `oneshot`: schematics, images (GET and HEAD), 404s, and that a
//! served image decompresses to a valid Talos image.

#![allow(clippy::unwrap_used)]

use std::io::Read;

use axum::body::Body;
use hk8s_twin_factory::{Arch, Factory, ImageInfo, Inspection, image, router, schematic};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn call(
    f: &Factory,
    method: &str,
    uri: &str,
    body: &str,
) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = router(f.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, bytes)
}

#[tokio::test]
async fn schematics_are_content_addressed() {
    let f = Factory::new(hk8s_twin_factory::default_versions());
    let (status, _, body) = call(
        &f,
        "POST",
        "/schematics",
        "customization:\n  systemExtensions:\n    officialExtensions:\n      - siderolabs/qemu-guest-agent\n",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["id"], schematic::HETZNER_QEMU_GUEST_AGENT_ID);
    let (status, _, body) = call(
        &f,
        "POST",
        "/schematics",
        "customization:\n  extraKernelArgs: [x]\n",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(f.knows_schematic(&id));
    let (status, _, _) = call(&f, "POST", "/schematics", "what: ever\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn images_are_real_xz_of_valid_images_and_unknowns_are_404() {
    let f = Factory::new(["v1.11.6".to_string()]);
    let uri = format!(
        "/image/{}/v1.11.6/hcloud-arm64.raw.xz",
        schematic::VANILLA_ID
    );
    let (status, headers, body) = call(&f, "GET", &uri, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/x-xz");
    assert_eq!(headers["content-length"], body.len().to_string().as_str());
    assert!(
        body.len() < image::IMAGE_SIZE / 4,
        "compressed: {}",
        body.len()
    );
    assert!(body.starts_with(&[0xFD, b'7', b'z', b'X', b'Z', 0]));
    let mut raw = Vec::new();
    lzma_rust2::XzReader::new(&body[..], true)
        .read_to_end(&mut raw)
        .unwrap();
    assert_eq!(raw.len(), image::IMAGE_SIZE);
    let info = ImageInfo {
        talos_version: "v1.11.6".into(),
        arch: Arch::Arm64,
        schematic: schematic::VANILLA_ID.into(),
    };
    assert_eq!(image::inspect(&raw), Inspection::Talos(info));
    assert_eq!(f.downloads(), 1);
    // HEAD: same headers, no body, not a download.
    let (status, headers, body) = call(&f, "HEAD", &uri, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty());
    assert!(headers.contains_key("content-length"));
    assert_eq!(f.downloads(), 1);
    for bad in [
        format!(
            "/image/{}/v1.99.0/hcloud-arm64.raw.xz",
            schematic::VANILLA_ID
        ),
        format!("/image/{}/v1.11.6/hcloud-amd64.raw.xz", "0".repeat(64)),
        format!("/image/{}/v1.11.6/metal-amd64.iso", schematic::VANILLA_ID),
        format!(
            "/image/{}/v1.11.6/hcloud-riscv64.raw.xz",
            schematic::VANILLA_ID
        ),
    ] {
        let (status, _, _) = call(&f, "GET", &bad, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
    }
}
