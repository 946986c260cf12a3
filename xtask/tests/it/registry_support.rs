//! The test registry itself works: a push with skopeo shows up through the HTTP API.

use crate::support::registry::Registry;
use crate::support::*;

#[test]
fn registry_serves_what_skopeo_pushes() {
    if !have_tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let dir = temp_dir("registry-support");
    let registry = Registry::start(&dir.join("registry"));
    // An OCI layout with one empty-config image, made by hand.
    let layout = dir.join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let put = |bytes: &[u8]| -> String {
        use sha2::Digest;
        let hex = format!("{:x}", sha2::Sha256::digest(bytes));
        std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
        format!("sha256:{hex}")
    };
    let config =
        br#"{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = put(config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    let manifest_digest = put(manifest.as_bytes());
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"t"}}}}]}}"#,
            manifest.len()
        ),
    )
    .unwrap();
    let out = run(std::process::Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:t", layout.display()),
        &format!("docker://{}/test/img:v1", registry.addr),
    ]));
    assert_success(&out, "skopeo copy oci:layout:t to the registry");
    assert_eq!(registry.tags("test/img"), ["v1"]);
    let (m, digest) = registry.manifest("test/img", "v1").unwrap();
    assert_eq!(digest, manifest_digest);
    assert_eq!(m["config"]["digest"], config_digest.as_str());
    let cfg: serde_json::Value =
        serde_json::from_slice(&registry.blob("test/img", &config_digest)).unwrap();
    assert_eq!(cfg["architecture"], "arm64");
}
