//! Podman configured for these machines (see docs/testing.md): vfs storage, runc, cgroupfs,
//! no network, file events; everything in a temporary directory, passed through the
//! CONTAINERS_* variables so the user's own configuration is never touched.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Podman {
    pub dir: PathBuf,
}

impl Podman {
    /// Configuration and events live in `dir`; podman's own state (storage, run and tmp
    /// directories) lives under a short path in the system temp dir, because conmon's sockets
    /// inside it stop working once the path grows past about 40 characters (every container run
    /// then waits 20 s for conmon's timeout), and a checkout can sit anywhere.
    pub fn new(dir: &Path) -> Podman {
        std::fs::create_dir_all(dir).unwrap();
        let state = short_state_dir(dir);
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).unwrap();
        let s = state.display();
        let d = dir.display();
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\nnetns = \"none\"\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nruntime = \"runc\"\nevents_logger = \"file\"\nevents_logfile_path = \"{d}/events.log\"\ntmp_dir = \"{s}/tmp\"\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{s}/run\"\ngraphroot = \"{s}/graph\"\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .unwrap();
        Podman {
            dir: dir.to_owned(),
        }
    }

    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "CONTAINERS_CONF".into(),
                self.dir.join("containers.conf").display().to_string(),
            ),
            (
                "CONTAINERS_STORAGE_CONF".into(),
                self.dir.join("storage.conf").display().to_string(),
            ),
            (
                "CONTAINERS_REGISTRIES_CONF".into(),
                self.dir.join("registries.conf").display().to_string(),
            ),
        ]
    }

    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.envs(self.env());
        cmd
    }

    /// Builds an image from scratch holding static busybox and `files` (host path, image path).
    pub fn busybox_image(&self, name: &str, files: &[(&Path, &str)], entrypoint: &str) {
        self.busybox_image_for(None, Path::new("/bin/busybox"), name, files, entrypoint);
    }

    /// The same for another architecture (`Some("arm64")`) with that architecture's busybox.
    pub fn busybox_image_for(
        &self,
        arch: Option<&str>,
        busybox: &Path,
        name: &str,
        files: &[(&Path, &str)],
        entrypoint: &str,
    ) {
        let container = self.buildah(&["from", "scratch"]);
        let mut all = vec![(busybox, "/bin/busybox")];
        all.extend_from_slice(files);
        for (src, dest) in all {
            self.buildah(&["copy", &container, src.to_str().unwrap(), dest]);
        }
        if let Some(arch) = arch {
            self.buildah(&["config", "--arch", arch, &container]);
        }
        let ep = format!("[\"{entrypoint}\"]");
        self.buildah(&["config", "--entrypoint", &ep, &container]);
        self.buildah(&["commit", "-q", "--rm", &container, name]);
    }

    /// An image of `arch` holding one file, as a stand-in base for Dockerfiles (never run).
    pub fn base(&self, name: &str, arch: &str, file: &Path) {
        let container = self.buildah(&["from", "scratch"]);
        let file = file.display().to_string();
        self.buildah(&["copy", &container, &file, "/etc/stand-in-base"]);
        self.buildah(&["config", "--arch", arch, "--os", "linux", &container]);
        self.buildah(&["commit", "-q", "--rm", &container, name]);
    }

    /// A local image index `name` of `images` (each a local image), as a multi-arch base.
    pub fn index(&self, name: &str, images: &[&str]) {
        self.buildah(&["manifest", "create", name]);
        for image in images {
            let source = format!("containers-storage:{image}");
            self.buildah(&["manifest", "add", name, &source]);
        }
    }

    /// `buildah args` in this configuration, which must succeed; its stdout, trimmed.
    #[track_caller]
    pub fn buildah(&self, args: &[&str]) -> String {
        let out = super::run(self.command("buildah").args(args));
        super::assert_success(&out, &format!("buildah {args:?}"));
        super::stdout(&out).trim().to_owned()
    }

    /// How many containers were started from images whose name contains `image`.
    pub fn runs_of(&self, image: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.join("events.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| {
                e["Type"] == "container"
                    && e["Status"] == "start"
                    && e["Image"].as_str().is_some_and(|i| i.contains(image))
            })
            .count()
    }
}

/// `/tmp/xtp-<12 hex digits of the bench's path>`: short (not $TMPDIR, which may be long), and
/// distinct per bench.
fn short_state_dir(dir: &Path) -> PathBuf {
    use sha2::Digest;
    let hash = format!(
        "{:x}",
        sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes())
    );
    Path::new("/tmp").join(format!("xtp-{}", &hash[..12]))
}
