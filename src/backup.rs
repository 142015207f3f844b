//! `sidekick backup <dir>`: a consistent copy of what the bot knows — the store (a snapshot),
//! the vector index and the adapters — taken while the daemon runs (or when it does not).

use crate::config::Config;
use crate::files::{copy_synced, write_atomically};
use crate::store::FjallStore;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What a backup holds, written next to it as `backup.json`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BackupReport {
    pub dir: PathBuf,
    pub store_records: usize,
    pub index_files: Vec<String>,
    pub adapter_files: Vec<String>,
    pub created_at_unix: u64,
    pub sidekick_version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} already exists and is not empty; choose a new folder")]
    NotEmpty(PathBuf),
    #[error(
        "the daemon sees a different {seen} than you do (systemd's PrivateTmp gives the service a /tmp of its own), so a backup in {dir} would be out of your sight; \
         back up into a folder the service writes, such as {suggest}, or stop the daemon and run sidekick backup again"
    )]
    ElsewhereForDaemon { dir: PathBuf, seen: PathBuf, suggest: PathBuf },
    #[error(
        "the daemon cannot write to {dir} ({source}); under the shipped systemd unit (ProtectSystem=strict) it writes only to its ReadWritePaths: \
         back up into {suggest}, add the folder to ReadWritePaths, or stop the daemon and run sidekick backup again"
    )]
    NotWritable { dir: PathBuf, suggest: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("store: {0}")]
    Store(#[from] sidekick_actors::ports::StoreError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.to_path_buf(), source }
}

/// Where a backup can always go: beside the store, which the service writes.
fn suggested(config: &Config) -> PathBuf {
    std::path::absolute(config.storage.path.join("backups")).unwrap_or_else(|_| config.storage.path.join("backups"))
}

/// The nearest existing folder of a backup's destination, as the one asking for it sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SeenFolder {
    pub path: PathBuf,
    pub device: u64,
    pub inode: u64,
}

impl SeenFolder {
    /// The nearest folder of `dest` (or `dest`) that exists here.
    pub fn of(dest: &Path) -> Option<SeenFolder> {
        use std::os::unix::fs::MetadataExt;
        let path = dest.ancestors().find(|p| p.is_dir())?;
        let meta = std::fs::metadata(path).ok()?;
        Some(SeenFolder { path: path.to_path_buf(), device: meta.dev(), inode: meta.ino() })
    }

    /// Why the daemon must not write `dest`: it sees another folder at this path.
    pub fn differs_here(&self, dest: &Path, config: &Config) -> Option<BackupError> {
        let here = SeenFolder::of(&self.path);
        (here.as_ref() != Some(self)).then(|| BackupError::ElsewhereForDaemon {
            dir: dest.to_path_buf(),
            seen: self.path.clone(),
            suggest: suggested(config),
        })
    }
}

/// Copies `store` (a snapshot), the index files and the adapters into `dest`; every copy is
/// synced before `backup.json`, written last, names it. Call it after
/// the index and the adapter were saved, so the store copy is at least as new as both (a
/// restored index then only catches up).
pub fn take(config: &Config, store: &FjallStore, dest: &Path) -> Result<BackupReport, BackupError> {
    copy(config, store, dest).map_err(|e| match e {
        BackupError::Io { path, source }
            if path.starts_with(dest)
                && matches!(source.kind(), std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied) =>
        {
            BackupError::NotWritable { dir: dest.to_path_buf(), suggest: suggested(config), source }
        }
        other => other,
    })
}

fn copy(config: &Config, store: &FjallStore, dest: &Path) -> Result<BackupReport, BackupError> {
    if dest.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        return Err(BackupError::NotEmpty(dest.to_path_buf()));
    }
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    let mut index_files = Vec::new();
    let index = config.retrieval.index_file(&config.storage.path);
    for file in [index.clone(), index.with_extension("json")] {
        if file.is_file() {
            let name = file.file_name().expect("a file").to_string_lossy().into_owned();
            copy_synced(&file, &dest.join(&name)).map_err(io(&file))?;
            index_files.push(name);
        }
    }
    let mut adapter_files = Vec::new();
    let adapters = &config.rl.adapters_dir;
    let manifest_path = adapters.join("manifest.json");
    if let Ok(bytes) = std::fs::read(&manifest_path) {
        let to = dest.join("adapters");
        std::fs::create_dir_all(&to).map_err(io(&to))?;
        // The files the manifest names (they never change once written), then the manifest
        // as it was read: the copy is consistent even if a save or prune runs meanwhile.
        let manifest: sidekick_actors::ports::AdapterManifest = serde_json::from_slice(&bytes).unwrap_or_default();
        for version in &manifest.versions {
            let from = adapters.join(&version.file);
            if copy_synced(&from, &to.join(&version.file)).is_ok() {
                adapter_files.push(version.file.clone());
            }
        }
        write_atomically(&to.join("manifest.json"), &bytes).map_err(io(&to))?;
        adapter_files.push("manifest.json".into());
    }
    let store_records = store.backup_to(&dest.join("store"))?;
    let report = BackupReport {
        dir: dest.to_path_buf(),
        store_records,
        index_files,
        adapter_files,
        created_at_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        sidekick_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let json = serde_json::to_vec_pretty(&report).expect("serializable");
    write_atomically(&dest.join("backup.json"), &json).map_err(io(dest))?;
    Ok(report)
}
