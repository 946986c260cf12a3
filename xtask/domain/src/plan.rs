//! The resolved plan: what exactly will be built for each node role. Pure: given the variants,
//! the lock and the Talos version, `make` returns the same plan every time; `cargo xtask plan`
//! shows it, and build, ci, patch and profiles start from it.

use anyhow::Result;
use serde::Serialize;

use super::arch::Arch;
use super::diag::{self, Finding};
use super::image::ImageRef;
use super::lock::{self, Lock, OverlayEntry};
use super::output::{artifact, Output};
use super::profile::{self, Profile};
use super::shell;
use super::talos::{Talos, TalosVersion};
use super::target::Target;
use super::variant::{Names, Variant};

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub talos_version: TalosVersion,
    /// Where the Talos version was read.
    pub talos_version_source: String,
    pub registry: Option<String>,
    pub variants: Vec<VariantPlan>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VariantPlan {
    pub name: String,
    pub description: String,
    /// The first of `target.arches` (what the qemu boot runs).
    pub arch: Arch,
    /// Platform, board overlay and every architecture the role is built for.
    pub target: Target,
    /// Short names, in build order (firmware first).
    pub extensions: Vec<String>,
    /// The image references the profiles carry, in the same order.
    pub extension_refs: Vec<ImageRef>,
    /// Extensions whose lock entry has no digest yet.
    pub unpinned: Vec<String>,
    /// The board overlay's image by digest, from the lock.
    pub overlay_image: Option<ImageRef>,
    /// Repository the installer publishes to, without tag: one image index of `target.arches`
    /// when they are several.
    pub image: String,
    /// Repository the matchbox netboot image publishes to, without tag, an index as `image` is;
    /// none when the variant does not build both kernel and initramfs.
    pub matchbox_image: Option<String>,
    /// The tag of this target for the Talos version (`v1.13.6`, `aws-v1.13.6`,
    /// `rpi_generic-v1.13.6`); every other tag carries the same prefix (docs/targets.md).
    pub tag: String,
    pub profiles: Vec<PlannedProfile>,
    #[serde(skip)]
    pub variant: Variant,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedProfile {
    /// The output, named as upstream's `build-talos-<kind>` targets name it.
    pub kind: Output,
    pub arch: Arch,
    /// The file the imager writes.
    pub artifact: String,
    /// The exact object the imager receives.
    #[serde(serialize_with = "profile_json")]
    pub profile: Profile,
}

/// Profiles serialize through `Profile::to_json` only, so serde's code for them is generated
/// once (for `serde_json::Value`), not again for every writer that prints a plan.
fn profile_json<S: serde::Serializer>(
    profile: &Profile,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    profile.to_json().serialize(s)
}

impl PlannedProfile {
    /// The step's name in logs, caches and timings: `installer`, or `installer-arm64` when the
    /// role is built for several architectures.
    pub fn step(&self, multi_arch: bool) -> String {
        if multi_arch {
            format!("{}-{}", self.kind.name(), self.arch)
        } else {
            self.kind.name().to_owned()
        }
    }
}

/// `HOST[:PORT][/PATH...]`, each path segment a valid repository path segment (lowercase), as
/// image references require: caught here, not at the end of a build by the push.
pub fn check_registry(registry: &str) -> Result<()> {
    match registry_problem(registry) {
        None => Ok(()),
        Some(problem) => registry_usage(registry, &problem),
    }
}

/// The usage error of `registry` given on the command line with `problem`.
pub fn registry_usage<T>(registry: &str, problem: &RegistryProblem) -> Result<T> {
    let RegistryProblem { what, owner } = problem;
    diag::usage(format!(
        "--registry (or REGISTRY) = {:?}: {what}\n    fix: give HOST/OWNER without a scheme, e.g. --registry ghcr.io/{owner}",
        shell::address_shown(registry)
    ))
}

/// Why a registry cannot be published under ([`check_registry`]), for a message that names
/// where the value came from.
pub struct RegistryProblem {
    pub what: String,
    /// The owner for the fix's example: the one given, when it can be one once lowercased.
    pub owner: String,
}

/// What is wrong with `registry` as `HOST[:PORT][/PATH...]`, or `None` when nothing is.
pub fn registry_problem(registry: &str) -> Option<RegistryProblem> {
    let (host, path) = registry.split_once('/').unwrap_or((registry, ""));
    let host_ok = super::image::is_host(host);
    let bad_segment = path
        .split('/')
        .filter(|_| !path.is_empty())
        .find(|s| !super::image::is_path_segment(s));
    // As image references are read: a first part without `.` or `:` that is not `localhost` is
    // a Docker Hub owner, not a host (`acme/talos` is docker.io/acme/talos).
    let names_host = host.contains(['.', ':']) || host == "localhost";
    // where every owner shares the host, the first path part would become the owner
    let shared_host = super::image::SHARED_HOSTS.contains(&host.to_ascii_lowercase().as_str());
    let what = match bad_segment {
        _ if registry.contains("://") => "image references name a registry without a scheme".to_owned(),
        // before the host check: a password may hold `/`, and the "host" would be part of it
        _ if registry.contains('@') => "it has an `@`, which a registry's name never holds: credentials (`user:password@`) come from an auth file, --authfile, or GITHUB_TOKEN for ghcr.io".to_owned(),
        _ if !host_ok => format!("`{host}` is not a registry host[:port]"),
        Some(s) => format!("`{s}` is not a valid repository path segment (lowercase letters and digits, joined by `.`, `_`, `__` or dashes)"),
        None if !names_host => format!("`{host}` names no registry host: image references would read it as a Docker Hub owner"),
        None if shared_host && path.is_empty() => format!("no owner: the images would publish as {host}/<repository>, making each role's repository an owner of {host}"),
        None => return None,
    };
    // the example's owner: the one given, when it can be one once lowercased
    let owner = match path.split('/').next().filter(|o| !o.is_empty()) {
        Some(owner) => owner.to_lowercase(),
        None if !names_host && host_ok => host.to_lowercase(),
        None => String::new(),
    };
    let owner = match super::image::is_path_segment(&owner) {
        true => owner,
        false => "acme".to_owned(),
    };
    Some(RegistryProblem { what, owner })
}

/// A finding for each of `variant`'s extensions and firmware that the lock has no entry for
/// (`missing`, as `Lock::resolve` lists them), whose fix resolves it for `talos`.
pub fn missing_entries(
    variant: &Variant,
    missing: &[String],
    talos: &TalosVersion,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for name in missing {
        let field = [
            ("firmware", &variant.firmware),
            ("extensions", &variant.extensions),
        ]
        .iter()
        .find_map(|(field, names)| {
            let i = names.iter().position(|n| n == name)?;
            Some(format!("{field}[{i}]"))
        })
        .unwrap_or_default();
        findings.push(missing_entry(&variant.file(), field, name, talos));
    }
    findings
}

/// [`missing_entries`] of a file that is not a valid variant: the names `lock` has no entry
/// for, and its overlay when the lock lacks it or the catalog does not know it, except those
/// with a problem of their own among `found` (a misspelt name is reported as that, not as
/// missing too).
pub fn missing_names(names: &Names, lock: &Lock, found: &[Finding]) -> Vec<Finding> {
    let mut missing = Vec::new();
    let own = |field: &str| {
        found.iter().any(|f| {
            f.file == names.file
                && (f.field == field
                    || f.field
                        .strip_prefix(field)
                        .is_some_and(|r| r.starts_with('.')))
        })
    };
    for (field, name) in &names.names {
        if !own(field) && !lock.extensions.contains_key(name) {
            missing.push(missing_entry(
                &names.file,
                field.clone(),
                name,
                &lock.talos_version,
            ));
        }
    }
    if let Some(name) = names.overlay.as_deref().filter(|_| !own("overlay")) {
        match lock.overlay_named(name) {
            OverlayEntry::Missing => missing.push(missing_overlay(&names.file, name)),
            OverlayEntry::Unknown { .. } => {
                missing.extend(lock.unknown_overlay_named(&names.file, name))
            }
            OverlayEntry::None | OverlayEntry::Locked(_) => {}
        }
    }
    missing
}

fn missing_overlay(file: &str, name: &str) -> Finding {
    Finding::new(file, "overlay", format!("has no entry in {}", lock::SHOWN))
        .value(format!("{name:?}"))
        .fix("run `cargo xtask lock` to pin the board overlay")
}

fn missing_entry(file: &str, field: String, name: &str, talos: &TalosVersion) -> Finding {
    Finding::new(file, field, format!("has no entry in {}", lock::SHOWN))
        .value(format!("{name:?}"))
        .fix(format!("run `cargo xtask lock` to resolve it for Talos {talos} (the release must publish it), or check the spelling"))
}

/// Resolves the plan for the selected variants: pure given the variants, lock and version.
pub fn make(
    variants: Vec<Variant>,
    lock: &Lock,
    talos: Talos,
    registry: Option<String>,
) -> Result<Plan> {
    if let Some(registry) = &registry {
        check_registry(registry)?;
    }
    let mut warnings = Vec::new();
    let mut missing = Vec::new();
    if lock.talos_version != talos.version {
        warnings.push(format!(
            "{} was resolved for Talos {} but the pinned upstream uses {}: run `cargo xtask lock`",
            lock::SHOWN,
            lock.talos_version,
            talos.version
        ));
    }
    let mut plans = Vec::new();
    let mut findings = Vec::new();
    let mut unpinned: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for variant in variants {
        let resolved = lock.resolve(&variant);
        missing.extend(missing_entries(&variant, &resolved.missing, &talos.version));
        let file = variant.file();
        let overlay_image = match lock.overlay(&variant) {
            OverlayEntry::None => None,
            OverlayEntry::Locked(reference) => Some(reference.clone()),
            OverlayEntry::Missing => {
                let name = &variant.target.overlay.as_ref().expect("has one").name;
                missing.push(missing_overlay(&file, name));
                None
            }
            OverlayEntry::Unknown { .. } => {
                findings.extend(lock.unknown_overlay(&file, &variant));
                None
            }
        };
        for name in &resolved.unpinned {
            unpinned
                .entry(name.clone())
                .or_default()
                .push(format!("`{}`", variant.name));
        }
        let image = match &registry {
            Some(registry) => format!("{registry}/{}", variant.repository),
            None => variant.repository.clone(),
        };
        // A pin for another base installer (the profile's choice changed) is not used.
        let base_installer = lock.base_installer.as_ref().filter(|pin| {
            pin.repository == profile::BASE_INSTALLER
                && pin.tag.as_deref() == Some(&talos.version.to_string())
        });
        let locked = profile::Locked {
            extension_refs: &resolved.refs,
            overlay_image: overlay_image.as_ref(),
            base_installer,
        };
        // Output by output, each for every arch: a two-arch installer is two imager runs
        // whose results publish as one index.
        let mut profiles = Vec::new();
        for &output in &variant.outputs {
            for &arch in &variant.target.arches {
                profiles.push(PlannedProfile {
                    kind: output,
                    arch,
                    artifact: artifact(&variant.target, output, arch),
                    profile: profile::for_output(&variant, output, arch, &talos.version, locked),
                });
            }
        }
        plans.push(VariantPlan {
            name: variant.name.clone(),
            description: variant.description.clone(),
            arch: variant.arch,
            target: variant.target.clone(),
            extensions: variant.all_extensions().map(str::to_owned).collect(),
            extension_refs: resolved.refs,
            unpinned: resolved.unpinned,
            overlay_image,
            matchbox_image: variant
                .matchbox_repository()
                .map(|_| super::variant::matchbox_repository(&image)),
            image,
            tag: variant.target.tag(&talos.version.to_string()),
            profiles,
            variant,
        });
    }
    for (name, users) in unpinned {
        warnings.push(format!(
            "extension `{name}` ({}, used by {}) is not pinned to a digest: run `cargo xtask lock` to pin it",
            lock.extensions[&name],
            users.join(", ")
        ));
    }
    diag::into_result("invalid variants", findings)?;
    diag::into_result("extensions missing from the lock", missing)?;
    if registry.is_none() {
        warnings.push("no registry given: images are shown without one (set --registry, REGISTRY or GITHUB_REPOSITORY_OWNER)".into());
    }
    Ok(Plan {
        talos_version: talos.version,
        talos_version_source: talos.source,
        registry,
        variants: plans,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock() -> Lock {
        Lock::parse(
            r#"{"talos_version": "v1.13.99", "extensions_image": "ghcr.io/siderolabs/extensions:v1.13.99",
                "extensions": {"drbd": "ghcr.io/siderolabs/drbd:9.3.2-v1.13.99@sha256:4a6f77f4e3fde41f3656f72d7d68380356afbb289254af8263a154cf7b70598e",
                               "tailscale": "ghcr.io/siderolabs/tailscale:1.98.5"}}"#,
        )
        .unwrap()
    }

    fn variant(name: &str, extensions: &str) -> Variant {
        let config = if extensions.contains("tailscale") {
            r#","config":{"tailscale":{"mode":"userspace"}}"#
        } else {
            ""
        };
        crate::variant::parse(
            &format!("variants/{name}.json"),
            &format!(r#"{{"name":"{name}","description":"d","arch":"arm64","extensions":{extensions},"repository":"{name}/talos"{config}}}"#),
        )
        .unwrap()
    }

    fn talos() -> Talos {
        Talos {
            version: TalosVersion::parse("v1.13.99").unwrap(),
            source: "test".into(),
        }
    }

    #[test]
    fn unpinned_entries_are_planned_with_a_warning() {
        let plan = make(
            vec![variant("gw", r#"["drbd","tailscale"]"#)],
            &lock(),
            talos(),
            Some("ghcr.io/acme".into()),
        )
        .unwrap();
        let v = &plan.variants[0];
        assert_eq!(v.image, "ghcr.io/acme/gw/talos");
        assert_eq!(v.unpinned, ["tailscale"]);
        assert_eq!(plan.warnings.len(), 1);
        assert_eq!(
            plan.warnings[0],
            "extension `tailscale` (ghcr.io/siderolabs/tailscale:1.98.5, used by `gw`) is not pinned to a digest: run `cargo xtask lock` to pin it"
        );
        let installer = &v.profiles[0].profile.to_json();
        assert_eq!(
            installer["input"]["systemExtensions"][1]["imageRef"],
            "ghcr.io/siderolabs/tailscale:1.98.5"
        );
    }

    #[test]
    fn missing_entries_fail_with_the_fix() {
        let err = make(
            vec![variant("c", r#"["drbd","zfs"]"#)],
            &lock(),
            talos(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("variants/c.json: field `extensions[1]` = \"zfs\": has no entry in variants/extensions.lock")
                && err.contains("cargo xtask lock"),
            "{err}"
        );
    }

    #[test]
    fn stale_lock_version_is_a_warning() {
        let talos = Talos {
            version: TalosVersion::parse("v1.98.0").unwrap(),
            source: "test".into(),
        };
        let plan = make(
            vec![variant("c", r#"["drbd"]"#)],
            &lock(),
            talos,
            Some("ghcr.io/acme".into()),
        )
        .unwrap();
        assert!(plan.warnings[0]
            .contains("resolved for Talos v1.13.99 but the pinned upstream uses v1.98.0"));
        assert_eq!(plan.variants[0].profiles[0].profile.version, "v1.98.0");
    }

    #[test]
    fn registry_must_be_host_and_lowercase_path() {
        for good in [
            "ghcr.io/acme",
            "127.0.0.1:5000/acme/team",
            "localhost:5000",
            "r.example/a-b_c",
        ] {
            check_registry(good).unwrap();
        }
        let err = check_registry("ghcr.io/Acme").unwrap_err().to_string();
        assert_eq!(err, "--registry (or REGISTRY) = \"ghcr.io/Acme\": `Acme` is not a valid repository path segment (lowercase letters and digits, joined by `.`, `_`, `__` or dashes)\n    fix: give HOST/OWNER without a scheme, e.g. --registry ghcr.io/acme");
        let err = check_registry("https://ghcr.io/acme")
            .unwrap_err()
            .to_string();
        assert!(err.contains("without a scheme"), "{err}");
        let err = check_registry("ghcr io/acme").unwrap_err().to_string();
        assert!(
            err.contains("`ghcr io` is not a registry host[:port]"),
            "{err}"
        );
        assert!(check_registry("ghcr.io/acme/").is_err(), "empty segment");
        let err = check_registry("user:s3cr3t@ghcr.io/acme")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "--registry (or REGISTRY) = \"<redacted>@ghcr.io/acme\": it has an `@`, which a registry's name never holds: credentials (`user:password@`) come from an auth file, --authfile, or GITHUB_TOKEN for ghcr.io\n    fix: give HOST/OWNER without a scheme, e.g. --registry ghcr.io/acme");
        let err = check_registry("https://user:s3cr3t@ghcr.io/acme")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--registry (or REGISTRY) = \"https://<redacted>@ghcr.io/acme\": image references name a registry without a scheme"),
            "{err}"
        );
        let err = check_registry("acme").unwrap_err().to_string();
        assert!(
            err.contains("`acme` names no registry host: image references would read it as a Docker Hub owner")
                && err.ends_with("--registry ghcr.io/acme"),
            "{err}"
        );
        for bad in [
            "ghcr.io:abc/acme",
            "::1:5000/x",
            "ghcr.io:99999/acme",
            "-x.io/acme",
        ] {
            let err = check_registry(bad).unwrap_err().to_string();
            assert!(
                err.contains("is not a registry host[:port]"),
                "{bad}: {err}"
            );
        }
        for good in [
            "[::1]:5000/x",
            "GHCR.IO/acme",
            "registry.local:5000/team/sub",
        ] {
            check_registry(good).unwrap();
        }
        for shared in ["GHCR.IO", "index.docker.io", "Docker.io"] {
            let err = check_registry(shared).unwrap_err().to_string();
            assert!(err.contains("no owner"), "{shared}: {err}");
        }
        let err = check_registry("ghcr.io/acme:tag").unwrap_err().to_string();
        assert!(
            err.ends_with("e.g. --registry ghcr.io/acme"),
            "not the invalid value again: {err}"
        );
        let err = check_registry("ghcr.io").unwrap_err().to_string();
        assert!(
            err.contains("no owner: the images would publish as ghcr.io/<repository>"),
            "{err}"
        );
        check_registry("localhost/acme").unwrap();
        let plan = make(
            vec![variant("c", r#"["drbd"]"#)],
            &lock(),
            talos(),
            Some("ghcr.io/Acme".into()),
        );
        assert!(
            plan.is_err(),
            "plan, build and ci refuse it before anything runs"
        );
    }
}
