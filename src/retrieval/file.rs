//! The index on disk: usearch's own file, written by usearch straight from the live index
//! (no copy of it in memory), with its length and sha256 in the manifest beside it. usearch
//! has no checksum of its own, and a damaged graph can load fine and crash a search.
//!
//! Files written before this format frame the usearch bytes with a header of their own
//! (`SKVIDX01`); they still load.

use sha2::Digest;
use std::io::Read;
use std::path::{Path, PathBuf};
use usearch::Index;

/// The old format: this magic, the length and sha256 of the usearch bytes, then the bytes.
const MAGIC: &[u8; 8] = b"SKVIDX01";

/// What the index file was built with, and its length and checksum, kept beside it.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
pub struct Manifest {
    pub model: String,
    pub dimensions: usize,
    pub scalar: String,
    /// Absent for files of the old (framed) format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Manifest {
    /// Whether an index built as `other` says can be loaded as this one.
    pub fn built_like(&self, other: &Manifest) -> bool {
        (&self.model, self.dimensions, &self.scalar) == (&other.model, other.dimensions, &other.scalar)
    }
}

pub fn manifest_path(index: &Path) -> PathBuf {
    index.with_extension("json")
}

pub fn read_manifest(index: &Path) -> Result<Manifest, String> {
    std::fs::read(manifest_path(index))
        .map_err(|e| format!("no manifest: {e}"))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("bad manifest: {e}")))
}

/// Length and sha256 of a file, read in small pieces.
fn digest(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut length = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        length += n as u64;
    }
    Ok((length, hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn io(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Writes an index to `path` and its manifest beside it. `write` has usearch write the file
/// itself (the caller holds its index only for that call, not through the sync and checksum
/// that follow); it is synced and renamed into place, then the manifest names its checksum.
/// A crash between the two leaves a checksum that does not match: the next start rebuilds.
pub fn save(path: &Path, mut manifest: Manifest, write: impl FnOnce(&str) -> Result<(), String>) -> Result<(), String> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = path.with_extension("usearch.tmp");
    write(tmp.to_str().ok_or("the index path is not UTF-8")?)?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
    let (length, sha256) = digest(&tmp).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    manifest.length = Some(length);
    manifest.sha256 = Some(sha256);
    crate::files::write_atomically(&manifest_path(path), &serde_json::to_vec(&manifest).map_err(io)?).map_err(io)
}

/// Loads the index at `path` into `index` if its file is whole (checked against `manifest`).
pub fn load(index: &Index, path: &Path, manifest: &Manifest) -> Result<(), String> {
    let Some(sha256) = &manifest.sha256 else { return load_framed(index, path) };
    let (length, found) = digest(path).map_err(|e| format!("unreadable: {e}"))?;
    if Some(length) != manifest.length {
        return Err(format!("truncated: {length} of {} bytes", manifest.length.unwrap_or(0)));
    }
    if found != *sha256 {
        return Err("checksum mismatch".into());
    }
    let header = Index::metadata(path.to_str().ok_or("the index path is not UTF-8")?).map_err(|e| format!("unreadable header: {e}"))?;
    check_header(&header)?;
    index.load(path.to_str().unwrap_or_default()).map_err(|e| format!("unreadable: {e}"))
}

fn check_header(header: &usearch::ffi::IndexMetadata) -> Result<(), String> {
    if header.dimensions as usize != super::DIMENSIONS || header.metric != usearch::MetricKind::Cos || header.quantization != super::SCALAR
    {
        return Err(format!("file holds {}-dimensional {:?} vectors", header.dimensions, header.quantization));
    }
    Ok(())
}

/// A file of the old format: read whole, checked, loaded from memory.
fn load_framed(index: &Index, path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("unreadable: {e}"))?;
    let payload = unframe(&bytes)?;
    check_header(&Index::metadata_from_buffer(payload).map_err(|e| format!("unreadable header: {e}"))?)?;
    index.load_from_buffer(payload).map_err(|e| format!("unreadable: {e}"))
}

/// The usearch bytes of a framed index file, if the frame is whole and its checksum right.
fn unframe(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < 48 || &bytes[..8] != MAGIC {
        return Err("not a Sidekick index file".into());
    }
    let payload = &bytes[48..];
    let length = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    if payload.len() as u64 != length {
        return Err(format!("truncated: {} of {length} bytes", payload.len()));
    }
    if sha2::Sha256::digest(payload).as_slice() != &bytes[16..48] {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}
