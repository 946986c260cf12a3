//! A real OCI registry server (distribution, Debian package `docker-registry`) on a free
//! 127.0.0.1 port, with its storage in a temporary directory. Stopped when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct Registry {
    child: Child,
    dir: std::path::PathBuf,
    /// `127.0.0.1:<port>`
    pub addr: String,
}

impl Registry {
    /// Starts a registry whose files live under `dir`. Call `have_tools(&["docker-registry"])` first.
    pub fn start(dir: &Path) -> Registry {
        Registry::start_with(dir, "")
    }

    /// Like `start`, with `extra` appended to the configuration (top-level YAML, e.g. `auth:`).
    pub fn start_with(dir: &Path, extra: &str) -> Registry {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        std::fs::create_dir_all(dir.join("storage")).unwrap();
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{extra}",
                dir.join("storage").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        // The access log (one line per request) goes to stdout.
        let access = std::fs::File::create(dir.join("access.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(access)
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        let registry = Registry {
            child,
            addr,
            dir: dir.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&registry.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not listen on {} (see {})",
                registry.addr,
                dir.join("registry.log").display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        registry
    }

    /// GET a path on the registry's HTTP API (`/v2/...`), returning status, headers and body.
    /// A plain HTTP/1.0 request, so tests check the registry without going through xtask's client.
    pub fn get(&self, path: &str, accept: &str) -> (u16, String, Vec<u8>) {
        use std::io::{Read, Write};
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: {}\r\nAccept: {accept}\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("HTTP response has headers");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, head, raw[split + 4..].to_vec())
    }

    /// The manifest (or index) a reference points to, as JSON, and its digest.
    pub fn manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Option<(serde_json::Value, String)> {
        let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json";
        let (status, head, body) =
            self.get(&format!("/v2/{repository}/manifests/{reference}"), accept);
        if status != 200 {
            return None;
        }
        let digest = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("docker-content-digest:")
                    .map(|v| v.trim().to_owned())
            })
            .unwrap_or_default();
        Some((serde_json::from_slice(&body).unwrap(), digest))
    }

    pub fn tags(&self, repository: &str) -> Vec<String> {
        let (status, _, body) =
            self.get(&format!("/v2/{repository}/tags/list"), "application/json");
        if status != 200 {
            return Vec::new();
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let mut tags: Vec<String> = v["tags"]
            .as_array()
            .map(|a| a.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// Every blob served so far (`GET /v2/<repo>/blobs/<digest>` answered 200), in order, as
    /// `<repo>@<digest>`; from the registry's access log.
    pub fn blob_fetches(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        log.lines()
            .filter_map(|line| {
                let request = line.split('"').nth(1)?;
                let status = line.split('"').nth(2)?.split_whitespace().next()?;
                let path = request
                    .strip_prefix("GET /v2/")?
                    .split_whitespace()
                    .next()?;
                let (repo, digest) = path.split_once("/blobs/")?;
                (status == "200").then(|| format!("{repo}@{digest}"))
            })
            .collect()
    }

    pub fn blob(&self, repository: &str, digest: &str) -> Vec<u8> {
        let (status, _, body) = self.get(&format!("/v2/{repository}/blobs/{digest}"), "*/*");
        assert_eq!(status, 200, "blob {digest} in {repository}");
        body
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
