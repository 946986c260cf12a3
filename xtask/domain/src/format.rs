//! The imager's output and disk formats (`output.outFormat`, `imageOptions.diskFormat`).

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub enum OutFormat {
    #[serde(rename = "raw")]
    Raw,
    #[serde(rename = ".tar.gz")]
    TarGz,
    #[serde(rename = ".xz")]
    Xz,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    Raw,
    Qcow2,
    Vhd,
    Ova,
}

impl DiskFormat {
    /// As the imager spells it (and names the disk file after it).
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vhd => "vhd",
            DiskFormat::Ova => "ova",
        }
    }
}
