//! `cargo xtask lock` against a real registry server: each test builds its own synthetic
//! extensions image (an OCI layout assembled here, with a gzip'd tar layer carrying
//! `image-digests`), pushes it with skopeo, and resolves through `--registry-mirror`.
//! Every run works on a temporary copy of the repository data, so the real lock is never touched.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::support::registry::{free_port, Registry};
use crate::support::*;
use sha2::Digest;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// A made-up digest for extension `name`, so each line of `image-digests` is distinct.
fn fake_digest(name: &str) -> String {
    sha256(format!("extension {name}").as_bytes())
}

/// An `image-digests` line for `repository:tag`.
fn line(repository: &str, tag: &str) -> String {
    format!(
        "{repository}:{tag}@{}",
        fake_digest(&format!("{repository}:{tag}"))
    )
}

/// The `image-digests` of our synthetic release: the four extensions the variants use, with
/// decoys first (a longer name sharing the prefix, a name ending in `zfs`, `zfs` in another org).
fn digests_file(version: &str) -> String {
    [
        line("ghcr.io/siderolabs/zfs-utils", "1.0.0"),
        line("ghcr.io/siderolabs/openzfs", "2.0.0"),
        line("ghcr.io/otherorg/zfs", "9.9.9"),
        line("ghcr.io/siderolabs/drbd", &format!("9.3.2-{version}")),
        line("ghcr.io/siderolabs/zfs", &format!("2.4.3-{version}")),
        line("ghcr.io/siderolabs/spin", "v0.25.1"),
        line("ghcr.io/siderolabs/tailscale", "1.98.5"),
    ]
    .join("\n")
        + "\n"
}

/// A ustar archive of regular files.
fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        let mut header = [0u8; 512];
        header[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |field: &mut [u8], value: u64| {
            let text = format!("{value:0width$o}\0", width = field.len() - 1);
            field.copy_from_slice(text.as_bytes());
        };
        octal(&mut header[100..108], 0o644);
        octal(&mut header[108..116], 0);
        octal(&mut header[116..124], 0);
        octal(&mut header[124..136], data.len() as u64);
        octal(&mut header[136..148], 0);
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|&b| b as u32).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .arg("-nc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running gzip");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_success(&out, "gzip -nc");
    out.stdout
}

#[derive(Clone)]
struct Desc {
    media_type: String,
    digest: String,
    size: usize,
}

impl Desc {
    fn json(&self) -> String {
        format!(
            r#"{{"mediaType":"{}","digest":"{}","size":{}}}"#,
            self.media_type, self.digest, self.size
        )
    }
}

/// An OCI image layout being assembled.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn new(dir: PathBuf) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout { dir }
    }

    fn blob(&self, media_type: &str, bytes: &[u8]) -> Desc {
        let digest = sha256(bytes);
        std::fs::write(
            self.dir
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
            bytes,
        )
        .unwrap();
        Desc {
            media_type: media_type.into(),
            digest,
            size: bytes.len(),
        }
    }

    /// One image for `arch` with these layers (media type, blob), bottom first.
    fn image(&self, arch: &str, layers: &[(&str, Vec<u8>)]) -> Desc {
        let layers: Vec<Desc> = layers.iter().map(|(t, b)| self.blob(t, b)).collect();
        let diff_ids: Vec<String> = layers.iter().map(|d| format!("\"{}\"", d.digest)).collect();
        let config = self.blob(
            OCI_CONFIG,
            format!(
                r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
                diff_ids.join(",")
            )
            .as_bytes(),
        );
        let layers: Vec<String> = layers.iter().map(Desc::json).collect();
        self.blob(
            OCI_MANIFEST,
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}]}}"#,
                config.json(),
                layers.join(",")
            )
            .as_bytes(),
        )
    }

    fn index(&self, images: &[(&str, &Desc)]) -> Desc {
        let manifests: Vec<String> = images
            .iter()
            .map(|(arch, d)| {
                format!(
                    r#"{{"mediaType":"{}","digest":"{}","size":{},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#,
                    d.media_type, d.digest, d.size
                )
            })
            .collect();
        self.blob(
            OCI_INDEX,
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
                manifests.join(",")
            )
            .as_bytes(),
        )
    }

    /// Names `top` as tag `t` in the layout's index.json.
    fn tag(&self, top: &Desc) {
        std::fs::write(
            self.dir.join("index.json"),
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"t"}}}}]}}"#,
                top.media_type, top.digest, top.size
            ),
        )
        .unwrap();
    }

    /// Pushes tag `t` to `ADDR/siderolabs/extensions:<version>` exactly as built.
    #[track_caller]
    fn push(&self, registry: &Registry, version: &str, extra: &[&str]) {
        let out = run(Command::new("skopeo")
            .args(["copy", "--quiet", "--all", "--dest-tls-verify=false"])
            .args(extra)
            .arg(format!("oci:{}:t", self.dir.display()))
            .arg(format!(
                "docker://{}/siderolabs/extensions:{version}",
                registry.addr
            )));
        assert_success(
            &out,
            &format!(
                "skopeo copy (push) to {}/siderolabs/extensions:{version}",
                registry.addr
            ),
        );
    }
}

/// The usual layers of our extensions image: an unrelated bottom layer, then `image-digests`
/// (named `./image-digests`, as tar often writes it) beside a descriptions file.
fn extension_layers(digests: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            LAYER_GZIP,
            gzip(&tar(&[("etc/os-release", b"NAME=synthetic\n")])),
        ),
        (
            LAYER_GZIP,
            gzip(&tar(&[
                ("./descriptions.yaml", b"zfs: ZFS\n"),
                ("./image-digests", digests.as_bytes()),
            ])),
        ),
    ]
}

struct Setup {
    root: PathBuf,
    registry: Registry,
    layout: Layout,
}

/// A registry and a temporary repository copy; `None` when the tools are missing locally.
fn setup(name: &str) -> Option<Setup> {
    if !have_tools(&["docker-registry", "skopeo", "tar", "gzip"]) {
        return None;
    }
    let dir = temp_dir(&format!("lock-{name}"));
    let root = dir.join("repo");
    copy_repo_data(&root);
    let registry = Registry::start(&dir.join("registry"));
    let layout = Layout::new(dir.join("layout"));
    Some(Setup {
        root,
        registry,
        layout,
    })
}

impl Setup {
    fn mirror(&self) -> String {
        format!("ghcr.io={}", self.registry.addr)
    }

    fn xtask(&self, args: &[&str]) -> Output {
        let mut cmd = xtask(&self.root);
        cmd.args(args)
            .env("CARGO_TARGET_DIR", self.root.join("target"))
            .env_remove("REGISTRY_MIRRORS")
            .env_remove("GITHUB_TOKEN")
            .env("XTASK_RETRY_BASE_MS", "20");
        run(&mut cmd)
    }

    /// `cargo xtask build` up to the point where it would start the container engine: docker is
    /// pointed at a socket nobody serves, so the run stops right after the lock step.
    fn build_until_engine(&self, extra: &[&str]) -> Output {
        let mut args = vec!["build", "--no-matchbox", "--engine", "docker"];
        args.extend(extra);
        let mut cmd = xtask(&self.root);
        cmd.args(&args)
            .env("CARGO_TARGET_DIR", self.root.join("target"))
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .env_remove("REGISTRY_MIRRORS")
            .env_remove("GITHUB_TOKEN")
            .env("XTASK_RETRY_BASE_MS", "20");
        run(&mut cmd)
    }

    fn lock(&self, extra: &[&str]) -> Output {
        let mirror = self.mirror();
        let mut args = vec!["lock", "--registry-mirror", &mirror];
        args.extend(extra);
        self.xtask(&args)
    }

    fn lock_text(&self) -> String {
        std::fs::read_to_string(self.root.join("variants/extensions.lock")).unwrap()
    }

    fn lock_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.lock_text()).unwrap()
    }
}

/// The mirror serves an imager and a base installer for release `v` too: copies of its
/// extensions image (any image will do: only their digests are read).
fn serve_imager_and_base_installer(registry: &crate::support::registry::Registry, v: &str) {
    for repository in ["siderolabs/imager", "siderolabs/installer-base"] {
        let out = run(std::process::Command::new("skopeo").args([
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("docker://{}/siderolabs/extensions:{v}", registry.addr),
            &format!("docker://{}/{repository}:{v}", registry.addr),
        ]));
        assert_success(
            &out,
            &format!("skopeo copy to {}/{repository}:{v}", registry.addr),
        );
    }
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(out), stderr(out)))
}

#[test]
fn lock_resolves_every_variant_from_one_index_preferring_amd64() {
    let Some(s) = setup("index") else { return };
    let v = "v1.13.99";
    // arm64 is listed first and carries different digests: amd64 must still win.
    let arm64 = s.layout.image(
        "arm64",
        &extension_layers(&format!(
            "{}\n{}\n{}\n{}\n",
            line("ghcr.io/siderolabs/drbd", "arm"),
            line("ghcr.io/siderolabs/zfs", "arm"),
            line("ghcr.io/siderolabs/spin", "arm"),
            line("ghcr.io/siderolabs/tailscale", "arm")
        )),
    );
    let amd64 = s.layout.image("amd64", &extension_layers(&digests_file(v)));
    let index = s.layout.index(&[("arm64", &arm64), ("amd64", &amd64)]);
    s.layout.tag(&index);
    s.layout.push(&s.registry, v, &["--preserve-digests"]);
    serve_imager_and_base_installer(&s.registry, v);

    let out = s.lock(&["--json"]);
    assert_success(&out, "lock --json");
    let result = json(&out);
    assert_eq!(result["platform"], "linux/amd64");
    assert_eq!(result["changed"], true);
    // One index fetch and one image copy for all variants and all extensions, and one read
    // each of the imager's and the base installer's digests.
    assert_eq!(result["registry_commands"], 4);
    assert_eq!(
        s.lock_json()["imager"],
        format!("ghcr.io/siderolabs/imager:{v}@{}", index.digest),
        "the imager pinned by the digest its tag names"
    );
    assert_eq!(
        s.lock_json()["base_installer"],
        format!("ghcr.io/siderolabs/installer-base:{v}@{}", index.digest)
    );

    let lock = s.lock_json();
    assert_eq!(lock["talos_version"], v);
    assert_eq!(
        lock["extensions_image"],
        format!("ghcr.io/siderolabs/extensions:{v}@{}", index.digest)
    );
    let (_, served) = s.registry.manifest("siderolabs/extensions", v).unwrap();
    assert_eq!(
        served, index.digest,
        "the recorded digest is the one served"
    );
    let extensions = lock["extensions"].as_object().unwrap();
    assert_eq!(
        extensions.keys().collect::<Vec<_>>(),
        ["drbd", "spin", "tailscale", "zfs"],
        "every extension any variant uses, nothing else"
    );
    assert_eq!(
        extensions["zfs"],
        line("ghcr.io/siderolabs/zfs", &format!("2.4.3-{v}")),
        "exact repository match: not zfs-utils, openzfs or another org's zfs"
    );
    assert_eq!(
        extensions["tailscale"],
        line("ghcr.io/siderolabs/tailscale", "1.98.5")
    );
    assert!(
        s.lock_text().ends_with("}\n")
            && s.lock_text()
                .contains("\n  \"extensions\": {\n    \"drbd\""),
        "stable formatting: {}",
        s.lock_text()
    );

    // A second run changes nothing, and reuses the copied image: one registry command.
    let before = s.lock_text();
    let again = s.lock(&["--json"]);
    assert_success(&again, "lock --json (again)");
    assert_eq!(json(&again)["changed"], false);
    assert_eq!(json(&again)["registry_commands"], 3);
    assert_eq!(s.lock_text(), before, "deterministic output");

    let check = s.lock(&["--check"]);
    assert_success(&check, "lock --check");
    assert!(stdout(&check).contains("variants/extensions.lock is up to date"));
}

#[test]
fn first_platform_carrying_the_file_is_used_when_amd64_has_none() {
    let Some(s) = setup("arm64-only") else { return };
    let v = "v1.13.99";
    let amd64 = s.layout.image(
        "amd64",
        &[(LAYER_GZIP, gzip(&tar(&[("etc/os-release", b"x\n")])))],
    );
    let arm64 = s.layout.image("arm64", &extension_layers(&digests_file(v)));
    let index = s.layout.index(&[("amd64", &amd64), ("arm64", &arm64)]);
    s.layout.tag(&index);
    s.layout.push(&s.registry, v, &["--preserve-digests"]);
    let out = s.lock(&["--json", "--talos-version", v]);
    assert_success(&out, &format!("lock --json --talos-version {v}"));
    let result = json(&out);
    assert_eq!(result["platform"], "linux/arm64");
    assert_eq!(
        result["registry_commands"], 5,
        "index, amd64 copy, arm64 copy, the imager and the base installer (absent here)"
    );
    assert!(
        stderr(&out)
            .contains("warning: could not pin the imager ghcr.io/siderolabs/imager:v1.13.99"),
        "{}",
        stderr(&out)
    );
    assert!(s.lock_json().get("imager").is_none());
    assert_eq!(
        s.lock_json()["extensions"]["drbd"],
        line("ghcr.io/siderolabs/drbd", &format!("9.3.2-{v}"))
    );
}

#[test]
fn docker_v2_single_manifest_tag_is_read() {
    let Some(s) = setup("docker-v2") else { return };
    let v = "v1.13.98"; // a made-up release other than the fixture lock's
    let image = s.layout.image("amd64", &extension_layers(&digests_file(v)));
    s.layout.tag(&image);
    // Converted on push: Docker v2 schema 2 manifest and layer media types.
    s.layout.push(&s.registry, v, &["--format", "v2s2"]);
    let (manifest, digest) = s.registry.manifest("siderolabs/extensions", v).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let out = s.lock(&["--talos-version", v]);
    assert_success(&out, &format!("lock --talos-version {v}"));
    let lock = s.lock_json();
    assert_eq!(lock["talos_version"], v);
    assert_eq!(
        lock["extensions_image"],
        format!("ghcr.io/siderolabs/extensions:{v}@{digest}")
    );
    assert_eq!(
        lock["extensions"]["zfs"],
        line("ghcr.io/siderolabs/zfs", &format!("2.4.3-{v}"))
    );
}

#[test]
fn check_lists_every_missing_and_stale_entry_including_a_hand_edited_digest() {
    let Some(s) = setup("check") else { return };
    let v = "v1.13.99";
    let image = s.layout.image("amd64", &extension_layers(&digests_file(v)));
    s.layout.tag(&image);
    s.layout.push(&s.registry, v, &["--preserve-digests"]);

    // The repository's own lock: spin and tailscale have no digest, drbd and zfs differ from
    // this synthetic release, the extensions image is not pinned.
    let committed = s.lock_text();
    let out = s.lock(&["--check"]);
    let err = assert_failure(&out, "lock --check");
    for field in [
        "`extensions_image`",
        "`extensions.drbd`",
        "`extensions.zfs`",
        "`extensions.spin`",
        "`extensions.tailscale`",
    ] {
        assert!(err.contains(field), "{field} not reported:\n{err}");
    }
    assert!(err.contains("problems"), "{err}");
    assert!(
        err.contains(&format!(
            "fix: run `cargo xtask lock --talos-version {v} --registry-mirror {}` and commit variants/extensions.lock",
            s.mirror()
        )),
        "{err}"
    );
    assert_eq!(s.lock_text(), committed, "--check writes nothing");

    // Lock, then edit one digest by hand: --check names exactly that entry.
    assert_success(&s.lock(&[]), "lock");
    let good = line("ghcr.io/siderolabs/zfs", &format!("2.4.3-{v}"));
    let edited = format!(
        "ghcr.io/siderolabs/zfs:2.4.3-{v}@{}",
        fake_digest("tampered")
    );
    std::fs::write(
        s.root.join("variants/extensions.lock"),
        s.lock_text().replace(&good, &edited),
    )
    .unwrap();
    let out = s.lock(&["--check"]);
    let err = assert_failure(&out, "lock --check of a hand-edited digest");
    assert!(
        err.contains(&format!(
            "`extensions.zfs` = {edited}: stale: the registry has {good}"
        )),
        "{err}"
    );
    assert!(err.contains(": 1 problem\n"), "only zfs is wrong:\n{err}");

    // The fix it prints works.
    assert_success(&s.lock(&[]), "lock");
    assert_success(&s.lock(&["--check"]), "lock --check");

    // A lock broken beyond parsing: --check says so, and locking again repairs it.
    std::fs::write(
        s.root.join("variants/extensions.lock"),
        s.lock_text()
            .replace(&good, "ghcr.io/siderolabs/zfs:2@sha256:abc"),
    )
    .unwrap();
    let out = s.lock(&["--check"]);
    let err = assert_failure(&out, "lock --check of an unparsable lock");
    assert!(err.contains("invalid lock file"), "{err}");
    let out = s.lock(&["--talos-version", v]);
    assert_success(&out, &format!("lock --talos-version {v}"));
    assert_success(&s.lock(&["--check"]), "lock --check");
}

#[test]
fn absent_extension_is_named_with_the_talos_version() {
    let Some(s) = setup("absent") else { return };
    let v = "v1.13.99";
    let without_tailscale: String = digests_file(v)
        .lines()
        .filter(|l| !l.contains("/tailscale:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let image = s
        .layout
        .image("amd64", &extension_layers(&without_tailscale));
    s.layout.tag(&image);
    s.layout.push(&s.registry, v, &["--preserve-digests"]);
    let committed = s.lock_text();
    let out = s.lock(&["--talos-version", v]);
    let err = assert_failure(&out, &format!("lock --talos-version {v}"));
    assert!(
        err.contains(&format!("Talos {v} has no such extension")),
        "{err}"
    );
    assert!(
        err.contains("`tailscale`: no ghcr.io/siderolabs/tailscale line"),
        "{err}"
    );
    assert!(!err.contains("`zfs`"), "{err}");
    assert_eq!(s.lock_text(), committed, "a failed lock writes nothing");
}

#[test]
fn missing_extensions_tag_names_the_reference() {
    let Some(s) = setup("no-tag") else { return };
    let out = s.lock(&["--talos-version", "v1.99.0"]);
    let err = assert_failure(&out, "lock --talos-version v1.99.0");
    assert!(
        err.contains("reading the extensions image for Talos v1.99.0")
            && err.contains("ghcr.io/siderolabs/extensions:v1.99.0 was not found in the registry"),
        "{err}"
    );
    assert!(err.contains("fix: check the name and tag"), "{err}");
    assert!(!err.contains("retrying"), "404 is not retried:\n{err}");
}

#[test]
fn registry_down_is_retried_a_bounded_number_of_times_then_reported() {
    if !have_tools(&["skopeo"]) {
        return;
    }
    let root = temp_dir("lock-down");
    copy_repo_data(&root);
    let mirror = format!("ghcr.io=127.0.0.1:{}", free_port());
    let out = run(xtask(&root)
        .args(["lock", "--registry-mirror", &mirror])
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env("XTASK_RETRY_ATTEMPTS", "3")
        .env("XTASK_RETRY_BASE_MS", "10"));
    let err = assert_failure(&out, &format!("lock --registry-mirror {mirror}"));
    assert_eq!(err.matches("retrying in").count(), 2, "{err}");
    assert!(
        err.contains("gave up on ghcr.io/siderolabs/extensions:v1.13.99 after 3 tries"),
        "{err}"
    );
    assert!(err.contains("could not be reached"), "{err}");
    assert!(
        err.contains("fix: check the network")
            && err.contains("--registry-mirror ghcr.io=HOST:PORT"),
        "{err}"
    );
    assert!(err.contains("connection refused"), "{err}");
}

#[test]
fn corrupt_layer_is_reported_with_its_digest() {
    let Some(s) = setup("corrupt") else { return };
    let v = "v1.13.99";
    let good = gzip(&tar(&[("image-digests", digests_file(v).as_bytes())]));
    let truncated = good[..good.len() / 2].to_vec();
    let image = s.layout.image("amd64", &[(LAYER_GZIP, truncated.clone())]);
    s.layout.tag(&image);
    s.layout.push(&s.registry, v, &["--preserve-digests"]);
    let out = s.lock(&[]);
    let err = assert_failure(&out, "lock of a corrupt layer");
    assert!(
        err.contains(&format!(
            "layer {} of ghcr.io/siderolabs/extensions@{} is corrupt",
            sha256(&truncated),
            image.digest
        )),
        "{err}"
    );
}

#[test]
fn wrong_layer_media_type_is_reported() {
    let Some(s) = setup("media-type") else { return };
    let v = "v1.13.99";
    let layer = gzip(&tar(&[("image-digests", digests_file(v).as_bytes())]));
    let zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
    let image = s.layout.image("amd64", &[(zstd, layer)]);
    s.layout.tag(&image);
    s.layout.push(&s.registry, v, &["--preserve-digests"]);
    let out = s.lock(&[]);
    let err = assert_failure(&out, "lock of a zstd layer");
    assert!(
        err.contains(&format!("has media type `{zstd}`: expected a tar layer")),
        "{err}"
    );
}

#[test]
fn locked_build_refuses_an_unpinned_lock_and_an_unlocked_build_fills_it() {
    let Some(s) = setup("build") else { return };
    let v = "v1.13.99";
    let image = s.layout.image("amd64", &extension_layers(&digests_file(v)));
    s.layout.tag(&image);
    s.layout.push(&s.registry, v, &["--preserve-digests"]);
    serve_imager_and_base_installer(&s.registry, v);
    let committed = s.lock_json();
    let mirror = s.mirror();

    // --locked: the committed lock leaves spin and tailscale unpinned; nothing is fetched.
    let out = s.build_until_engine(&["--locked", "--registry-mirror", &mirror]);
    let err = assert_failure(&out, &format!("build --locked --registry-mirror {mirror}"));
    assert!(
        err.contains("--locked: variants/extensions.lock cannot be used"),
        "{err}"
    );
    assert!(
        err.contains("`extensions.spin`") && err.contains("`extensions.tailscale`"),
        "{err}"
    );
    assert!(err.contains("has no digest"), "{err}");
    assert_eq!(s.lock_json(), committed);

    // Without --locked: the unpinned entries are filled from the registry and it says so;
    // pinned entries stay as they are.
    let out = s.build_until_engine(&["--registry-mirror", &mirror]);
    let err = stderr(&out);
    assert!(past_the_lock(&err), "{err}");
    assert!(
        err.contains("resolving from the registry:\n  variants/extensions.lock: field `extensions.spin` = ghcr.io/siderolabs/spin:v0.25.1: has no digest"),
        "what it resolves is named first: {err}"
    );
    assert!(
        err.contains(
            "filled variants/extensions.lock from ghcr.io/siderolabs/extensions:v1.13.99@"
        ),
        "{err}"
    );
    let lock = s.lock_json();
    assert_eq!(
        lock["extensions"]["spin"],
        line("ghcr.io/siderolabs/spin", "v0.25.1")
    );
    assert_eq!(
        lock["extensions"]["tailscale"],
        line("ghcr.io/siderolabs/tailscale", "1.98.5")
    );
    assert_eq!(lock["extensions"]["drbd"], committed["extensions"]["drbd"]);
    assert!(err.contains("keeping the locked one"), "{err}");

    // Now complete: --locked passes without touching the registry.
    let nowhere = format!("ghcr.io=127.0.0.1:{}", free_port());
    let out = s.build_until_engine(&["--locked", "--registry-mirror", &nowhere]);
    assert!(past_the_lock(&stderr(&out)), "{}", stderr(&out));
}

/// The build got past the lock step: it stopped at the (unreachable) engine or built.
fn past_the_lock(err: &str) -> bool {
    !err.contains("extensions.lock cannot be used")
        && !err.contains("could not fill")
        && (err.contains("docker") || err.contains("imager"))
}

#[test]
fn unlocked_build_without_registry_keeps_unpinned_entries_with_a_warning() {
    if !have_tools(&["skopeo"]) {
        return;
    }
    let root = temp_dir("lock-build-offline");
    copy_repo_data(&root);
    let mirror = format!("ghcr.io=127.0.0.1:{}", free_port());
    let out = run(xtask(&root)
        .args([
            "build",
            "--no-matchbox",
            "--engine",
            "docker",
            "--registry-mirror",
            &mirror,
        ])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env("XTASK_RETRY_ATTEMPTS", "2")
        .env("XTASK_RETRY_BASE_MS", "10"));
    let err = stderr(&out);
    assert!(past_the_lock(&err), "{err}");
    assert!(err.contains("warning: could not pin the lock"), "{err}");
    assert_eq!(
        std::fs::read(root.join("variants/extensions.lock")).unwrap(),
        std::fs::read(fixture_dir().join("variants/extensions.lock")).unwrap()
    );
}

#[test]
fn dry_run_prints_the_commands_and_contacts_nothing() {
    let root = temp_dir("lock-dry-run");
    copy_repo_data(&root);
    let out = run(xtask(&root).args([
        "lock",
        "--dry-run",
        "--registry-mirror",
        "ghcr.io=127.0.0.1:1",
    ]));
    assert_success(&out, "lock --dry-run --registry-mirror ghcr.io=127.0.0.1:1");
    let text = stdout(&out);
    assert!(
        text.starts_with("skopeo --command-timeout 60s inspect --raw --tls-verify=false docker://127.0.0.1:1/siderolabs/extensions:v1.13.99\n"),
        "{text}"
    );
    assert!(text.contains("drbd spin tailscale zfs"), "{text}");
}

/// Without the registry, `--check` still lists what the lock lacks for sure (unpinned entries,
/// the pins a --locked build needs), then says the rest cannot be told.
#[test]
fn check_without_the_registry_lists_what_it_knows() {
    if !have_tools(&["skopeo"]) {
        return;
    }
    let root = temp_dir("lock-check-offline");
    copy_repo_data(&root);
    let out = run(xtask(&root)
        .args([
            "lock",
            "--check",
            "--registry-mirror",
            "ghcr.io=127.0.0.1:1",
        ])
        .env("XTASK_RETRY_ATTEMPTS", "1"));
    let err = assert_failure(&out, "lock --check with the registry out of reach");
    assert!(
        err.contains("is not up to date, as far as can be told without the registry: 4 problems")
            && err.contains(
                "field `extensions.tailscale` = ghcr.io/siderolabs/tailscale:1.98.5: has no digest"
            )
            && err.contains("field `base_installer`: missing")
            && err.contains("field `imager`: missing")
            && err.contains("and what else is out of date cannot be told: "),
        "{err}"
    );
    // and as JSON
    let out = run(xtask(&root)
        .args([
            "lock",
            "--check",
            "--json",
            "--registry-mirror",
            "ghcr.io=127.0.0.1:1",
        ])
        .env("XTASK_RETRY_ATTEMPTS", "1"));
    assert_failure(&out, "lock --check --json with the registry out of reach");
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["up_to_date"], false);
    assert_eq!(
        verdict["problems"].as_array().unwrap().len(),
        4,
        "{verdict:#}"
    );
    assert!(
        verdict["registry_error"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:1"),
        "{verdict:#}"
    );
    // for another release, what it knows is that every entry is resolved again
    let out = run(xtask(&root)
        .args([
            "lock",
            "--check",
            "--talos-version",
            "v1.12.0",
            "--registry-mirror",
            "ghcr.io=127.0.0.1:1",
        ])
        .env("XTASK_RETRY_ATTEMPTS", "1"));
    let err = assert_failure(&out, "lock --check --talos-version v1.12.0 offline");
    assert!(
        err.contains("1 problem\n")
            && err.contains("field `talos_version` = v1.13.99: is for another release than the one asked for (v1.12.0)")
            && err.contains("fix: run `cargo xtask lock --talos-version v1.12.0"),
        "{err}"
    );
}

#[test]
fn catalog_images_of_another_release_are_refused_offline_with_the_entries() {
    // a v1.14.0 lock whose extensions and overlays images, and drbd and zfs, are v1.13.99's
    let root = temp_dir("lock-catalog-release");
    copy_repo_data(&root);
    let path = root.join("variants/extensions.lock");
    let mut lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let digest = fake_digest("catalog");
    lock["talos_version"] = "v1.14.0".into();
    lock["extensions_image"] = format!("ghcr.io/siderolabs/extensions:v1.13.99@{digest}").into();
    lock["overlays_image"] = format!("ghcr.io/siderolabs/overlays:v1.13.99@{digest}").into();
    std::fs::write(&path, serde_json::to_string_pretty(&lock).unwrap()).unwrap();
    let assert_all = |err: &str| {
        for (field, what) in [
            ("extensions_image", "extensions"),
            ("overlays_image", "overlays"),
        ] {
            assert!(
                err.contains(&format!("variants/extensions.lock: field `{field}` = ghcr.io/siderolabs/{what}:v1.13.99@{digest}: the {what} image of Talos v1.13.99, but the lock is for v1.14.0")),
                "{field} not reported:\n{err}"
            );
        }
        assert!(
            err.contains("fix: run `cargo xtask lock --talos-version v1.14.0` and commit variants/extensions.lock"),
            "{err}"
        );
        // in the same run as the entries built for that release
        assert!(
            err.contains("field `extensions.drbd`") && err.contains("field `extensions.zfs`"),
            "{err}"
        );
        assert!(err.contains("invalid lock file: 4 problems"), "{err}");
    };

    let out = run(xtask(&root)
        .args([
            "lock",
            "--check",
            "--registry-mirror",
            "ghcr.io=127.0.0.1:1",
        ])
        .env("XTASK_RETRY_ATTEMPTS", "1"));
    assert_all(&assert_failure(&out, "lock --check offline"));
    let out = run(xtask(&root).env("PATH", "/nonexistent").args([
        "build",
        "--locked",
        "--dry-run",
        "--variant",
        "compute",
    ]));
    assert_all(&assert_failure(&out, "build --locked --dry-run"));
}

#[test]
fn a_registry_that_never_answers_times_out_and_is_retried() {
    if !have_tools(&["skopeo"]) {
        return;
    }
    // Accepts connections and never answers: each try ends at skopeo's command timeout.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let root = temp_dir("lock-hang");
    copy_repo_data(&root);
    let out = run(xtask(&root)
        .args(["lock", "--registry-mirror", &format!("ghcr.io={addr}")])
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env("XTASK_REGISTRY_TIMEOUT_SECS", "1")
        .env("XTASK_RETRY_ATTEMPTS", "2")
        .env("XTASK_RETRY_BASE_MS", "10"));
    let err = assert_failure(&out, &format!("lock --registry-mirror ghcr.io={addr}"));
    assert_eq!(err.matches("retrying in").count(), 1, "{err}");
    assert!(
        err.contains("gave up on ghcr.io/siderolabs/extensions:v1.13.99 after 2 tries"),
        "{err}"
    );
}

#[test]
fn private_registry_refuses_anonymous_reads_and_takes_an_authfile() {
    if !have_tools(&["docker-registry", "skopeo", "tar", "gzip"]) {
        return;
    }
    let dir = temp_dir("lock-auth");
    let root = dir.join("repo");
    copy_repo_data(&root);
    // user `ci`, password `s3cret` (bcrypt, cost 4)
    let htpasswd = dir.join("htpasswd");
    std::fs::write(
        &htpasswd,
        "ci:$2b$04$KReWpktZwYBscwQ4MI7oNeU74eXvT/n0Qv6ycRaHgNn7OqxdPildi\n",
    )
    .unwrap();
    let registry = Registry::start_with(
        &dir.join("registry"),
        &format!(
            "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
            htpasswd.display()
        ),
    );
    let layout = Layout::new(dir.join("layout"));
    let v = "v1.13.99";
    let image = layout.image("amd64", &extension_layers(&digests_file(v)));
    layout.tag(&image);
    layout.push(
        &registry,
        v,
        &["--preserve-digests", "--dest-creds", "ci:s3cret"],
    );

    let mirror = format!("ghcr.io={}", registry.addr);
    let lock = |extra: &[&str]| {
        run(xtask(&root)
            .args(["lock", "--registry-mirror", &mirror])
            .args(extra)
            .env("CARGO_TARGET_DIR", root.join("target"))
            .env("XTASK_RETRY_BASE_MS", "10")
            .env_remove("GITHUB_TOKEN")
            .env_remove("REGISTRY_AUTH_FILE"))
    };
    let auth_file = |name: &str, auth: &str| {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, registry.addr),
        )
        .unwrap();
        path.display().to_string()
    };

    let out = lock(&[]);
    let err = assert_failure(&out, "lock without credentials");
    assert!(
        err.contains("ghcr.io/siderolabs/extensions:v1.13.99: the registry refused the credentials (401 unauthorized)"),
        "{err}"
    );
    assert!(!err.contains("retrying"), "401 is not retried:\n{err}");

    let wrong = auth_file("wrong.json", "Y2k6d3Jvbmc="); // ci:wrong
    let out = lock(&["--authfile", &wrong]);
    let err = assert_failure(&out, "lock --authfile wrong.json");
    assert!(err.contains("401 unauthorized"), "{err}");

    let good = auth_file("auth.json", "Y2k6czNjcmV0"); // ci:s3cret
    let out = lock(&["--authfile", &good]);
    assert_success(&out, "lock --authfile auth.json");
    let text = std::fs::read_to_string(root.join("variants/extensions.lock")).unwrap();
    assert!(
        text.contains(&line("ghcr.io/siderolabs/spin", "v0.25.1")),
        "{text}"
    );
}

/// A stand-in registry for failures the real one cannot be made to produce on demand: it
/// answers `/v2/` and then `status` (with `Retry-After: 0`, so skopeo's own 429 backoff does not
/// slow the test) to every other request, counting them.
fn failing_registry(
    status: &'static str,
    body: &'static str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) <= 2 {
                    break;
                }
            }
            let (status, body) = if request.starts_with("GET /v2/ ") {
                ("200 OK", "{}")
            } else if request.starts_with("GET /v2/") {
                counter.fetch_add(1, Ordering::SeqCst);
                (status, body)
            } else {
                // skopeo's HTTPS attempt before plain HTTP: not a request we count
                continue;
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nRetry-After: 0\r\nContent-Type: application/json\r\nDocker-Distribution-API-Version: registry/2.0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, hits)
}

#[test]
fn rate_limits_and_server_errors_are_retried_a_bounded_number_of_times() {
    if !have_tools(&["skopeo"]) {
        return;
    }
    let cases = [
        (
            "429 Too Many Requests",
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"rate limit exceeded"}]}"#,
        ),
        ("503 Service Unavailable", "try later"),
    ];
    for (i, (status, body)) in cases.into_iter().enumerate() {
        let (addr, hits) = failing_registry(status, body);
        let root = temp_dir(&format!("lock-status-{i}"));
        copy_repo_data(&root);
        let out = run(xtask(&root)
            .args(["lock", "--registry-mirror", &format!("ghcr.io={addr}")])
            .env("CARGO_TARGET_DIR", root.join("target"))
            .env("XTASK_RETRY_ATTEMPTS", "3")
            .env("XTASK_RETRY_BASE_MS", "10"));
        let err = assert_failure(
            &out,
            &format!("lock --registry-mirror ghcr.io={addr} ({status})"),
        );
        assert!(
            err.contains("gave up on ghcr.io/siderolabs/extensions:v1.13.99 after 3 tries"),
            "{status}: {err}"
        );
        assert_eq!(err.matches("retrying in").count(), 2, "{status}: {err}");
        let hits = hits.load(std::sync::atomic::Ordering::SeqCst);
        if status.starts_with("429") {
            // skopeo itself retries a 429 a few times (honouring Retry-After) inside each try
            assert!(
                hits % 3 == 0 && (3..=18).contains(&hits),
                "{status}: {hits} requests for 3 tries:\n{err}"
            );
        } else {
            assert_eq!(hits, 3, "{status}: one manifest request per try:\n{err}");
        }
    }
}

#[test]
fn without_a_lock_or_a_fetched_tree_the_talos_version_is_asked_for() {
    let root = temp_dir("lock-no-version");
    copy_repo_data(&root);
    std::fs::remove_file(root.join("variants/extensions.lock")).unwrap();
    let pin: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("patches/upstream.json")).unwrap())
            .unwrap();
    let tag = pin["tag"].as_str().unwrap();
    for args in [&["lock", "--dry-run"][..], &["build", "--dry-run"]] {
        let out = run(xtask(&root)
            .args(args)
            .env("CARGO_TARGET_DIR", root.join("target")));
        let err = assert_failure(&out, &format!("{args:?}"));
        assert!(
            err.contains(&format!("no Talos version known: there is no variants/extensions.lock and the pinned CozyStack {tag} is not fetched")),
            "{args:?}: {err}"
        );
        assert!(
            err.contains("fix: run `cargo xtask upstream` first"),
            "{err}"
        );
    }
    // Given the version, the lock can be written from scratch (here: the commands it would run).
    let out = run(xtask(&root)
        .args(["lock", "--dry-run", "--talos-version", "v1.13.99"])
        .env("CARGO_TARGET_DIR", root.join("target")));
    assert_success(&out, "lock --dry-run --talos-version v1.13.99");
    assert!(stdout(&out).contains("docker://ghcr.io/siderolabs/extensions:v1.13.99"));
}
