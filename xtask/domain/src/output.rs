//! What a variant can build (output kinds), and the one place their file names are written.

use serde::{Deserialize, Serialize};

use super::arch::Arch;
use super::target::{Platform, Target};

/// What a variant can build. Each maps to one imager profile (see `profile::for_output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    /// the installer container image (`installer-<arch>.tar`), what `talosctl upgrade` pulls
    Installer,
    /// the kernel (`kernel-<arch>`), for PXE/matchbox and the smoke boot
    Kernel,
    /// the initramfs (`initramfs-metal-<arch>.xz`), for PXE/matchbox and the smoke boot
    Initramfs,
    /// a bare-metal disk image (`metal-<arch>.raw.xz`)
    Metal,
    /// a bootable ISO (`metal-<arch>.iso`)
    Iso,
    /// a disk image for cloud-init style platforms (`nocloud-<arch>.raw.xz`)
    Nocloud,
    /// the disk image of the variant's platform, with the imager's disk defaults for it
    /// (`aws-<arch>.raw.xz`; `metal-<arch>.raw.xz` on metal)
    Disk,
}

impl Output {
    pub const ALL: [Output; 7] = [
        Output::Installer,
        Output::Kernel,
        Output::Initramfs,
        Output::Metal,
        Output::Iso,
        Output::Nocloud,
        Output::Disk,
    ];
    /// What a variant builds when its file does not say: everything a node and a netboot server need.
    pub const DEFAULT: [Output; 4] = [
        Output::Installer,
        Output::Kernel,
        Output::Initramfs,
        Output::Metal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Output::Installer => "installer",
            Output::Kernel => "kernel",
            Output::Initramfs => "initramfs",
            Output::Metal => "metal",
            Output::Iso => "iso",
            Output::Nocloud => "nocloud",
            Output::Disk => "disk",
        }
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The file the imager writes for an output of a variant's target, for one arch.
pub fn artifact(target: &Target, output: Output, arch: Arch) -> String {
    match output {
        Output::Disk => target.platform.disk_artifact(arch),
        other => artifact_name(other, arch),
    }
}

/// The file the imager writes for an output, at the root of its tar stream.
pub fn artifact_name(output: Output, arch: Arch) -> String {
    match output {
        Output::Installer => format!("installer-{arch}.tar"),
        Output::Kernel => format!("kernel-{arch}"),
        Output::Initramfs => format!("initramfs-metal-{arch}.xz"),
        Output::Metal => format!("metal-{arch}.raw.xz"),
        Output::Iso => format!("metal-{arch}.iso"),
        Output::Nocloud => format!("nocloud-{arch}.raw.xz"),
        // on metal; see `artifact` for other platforms
        Output::Disk => Platform::Metal.disk_artifact(arch),
    }
}

/// The matchbox netboot image's archive in `_out/<variant>/`.
pub fn matchbox_archive_name(arch: Arch) -> String {
    format!("matchbox-{arch}.tar")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_names_follow_the_imager() {
        let names: Vec<String> = Output::ALL
            .iter()
            .map(|o| artifact_name(*o, Arch::Arm64))
            .collect();
        assert_eq!(
            names,
            [
                "installer-arm64.tar",
                "kernel-arm64",
                "initramfs-metal-arm64.xz",
                "metal-arm64.raw.xz",
                "metal-arm64.iso",
                "nocloud-arm64.raw.xz",
                "metal-arm64.raw.xz"
            ]
        );
    }
}
