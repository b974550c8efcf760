//! Files: reading inputs, and writing keys and certificates all or none (temporary files renamed into place, never over an existing file without `--force`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::UsageError;

pub(super) fn read_text(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} {}", path.display()))
}

/// A file to write; `secret` ones get mode 0600.
pub(super) struct OutFile {
    pub(super) path: PathBuf,
    pub(super) contents: String,
    pub(super) secret: bool,
}

/// Writes every file or none: refuses existing files unless `force`, writes
/// temporary files (keys created 0600), fsyncs, then renames them into place.
pub(super) fn write_files(files: &[OutFile], force: bool) -> anyhow::Result<()> {
    if !force && let Some(f) = files.iter().find(|f| f.path.exists()) {
        return Err(UsageError(format!(
            "{} exists; pass --force to overwrite it (nothing was written)",
            f.path.display()
        ))
        .into());
    }
    let mut temps: Vec<PathBuf> = Vec::new();
    let result = write_temps(files, &mut temps);
    if let Err(e) = result {
        for t in &temps {
            let _ = std::fs::remove_file(t);
        }
        return Err(e.context("nothing was written"));
    }
    for (f, tmp) in files.iter().zip(&temps) {
        std::fs::rename(tmp, &f.path)
            .with_context(|| format!("cannot move {} to {}", tmp.display(), f.path.display()))?;
    }
    Ok(())
}

/// Writes each file to a temporary sibling (pushed to `temps`), synced.
pub(super) fn write_temps(files: &[OutFile], temps: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for f in files {
        let dir = match f.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let name = f
            .path
            .file_name()
            .context("an output path has no file name")?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if f.secret { 0o600 } else { 0o644 })
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        temps.push(tmp.clone());
        file.write_all(f.contents.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_files_writes_keys_0600_and_never_overwrites_without_force() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("sub/a.key.pem");
        let files = [OutFile {
            path: key.clone(),
            contents: "k".into(),
            secret: true,
        }];
        write_files(&files, false).unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = write_files(&files, false).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err:#}");
        write_files(&files, true).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
    }
}
