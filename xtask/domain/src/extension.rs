//! What is known about individual Talos system extensions, independent of any variant.

/// Where every official extension image lives; the lock never names a mirror.
pub const EXTENSIONS_REPOSITORY: &str = "ghcr.io/siderolabs";

/// Firmware packages that only make sense on x86: they build into an arm64 image but are dead weight there.
pub const X86_ONLY_FIRMWARE: &[&str] = &["amd-ucode", "intel-ucode", "i915", "amdgpu"];

/// What an extension needs from the machine config.
pub enum Needs {
    /// Nothing: the extension works with any machine config.
    Nothing,
    /// Settings that follow from the extension alone (kernel modules, a RuntimeClass); rendered
    /// without a declaration in the variant.
    Implied,
    /// Choices the variant must declare under `config.<field>`; a variant carrying the
    /// extension without them is invalid.
    Declared {
        field: &'static str,
        why: &'static str,
        example: &'static str,
    },
}

pub fn needs(extension: &str) -> Needs {
    match extension {
        "drbd" | "zfs" | "spin" => Needs::Implied,
        "tailscale" => Needs::Declared {
            field: "tailscale",
            why: "its service ext-tailscale waits for an ExtensionServiceConfig named `tailscale`; without one the node waits 70 minutes in boot and reboots, again and again",
            example: r#"{"mode": "userspace", "routes": ["10.96.0.0/16"]}"#,
        },
        _ => Needs::Nothing,
    }
}
