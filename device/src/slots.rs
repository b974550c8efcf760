//! The certificate slots on disk: `current/` and `next/`, each holding
//! `cert.pem`, `key.pem` (mode 0600) and `meta.json`.
//!
//! Every change is crash safe: a slot is written whole into `<name>.tmp/`
//! (each file fsynced, then the directory), renamed into place, and the
//! state directory fsynced. Promotion renames `current/` to `old/` and
//! `next/` to `current/`, and **keeps** `old/`: a PUBACK of `crt_ack` proves
//! delivery, not that the cloud committed, so the previous key stays until
//! the agent has proof of the commit (the old certificate is refused:
//! [`Slots::confirm`]) or falls back to it because the new one is refused
//! ([`Slots::swap`]). [`Slots::load`] finishes or undoes whatever a crash
//! interrupted, so that it always finds a usable certificate and key once
//! one was installed.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rules::contracts::{KeyAlgorithm, RotationId};
use serde::{Deserialize, Serialize};

use crate::keys;

const CURRENT: &str = "current";
const NEXT: &str = "next";
const OLD: &str = "old";
const SWAP: &str = "swap";
const CERT: &str = "cert.pem";
const KEY: &str = "key.pem";
const META: &str = "meta.json";

/// Called before every step that changes the disk, with the step's name;
/// returning `true` makes the step (and the operation) stop there as if the
/// process had crashed. For crash tests and fault injection.
pub type FaultHook = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Why the slots could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SlotError {
    /// A file system operation failed.
    #[error("{action} `{path}`: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A slot's files are unusable.
    #[error("slot `{path}` is unusable: {reason}")]
    Corrupt {
        /// The slot directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The fault hook stopped the operation at this step.
    #[error("simulated crash at step `{step}`")]
    Crashed {
        /// The step's name.
        step: String,
    },
}

/// What `meta.json` records about a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlotMeta {
    /// The rotation that produced this slot, if the cloud named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_id: Option<RotationId>,
    /// The certificate's AWS IoT id, once the slot has a certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_id: Option<String>,
    /// The key's algorithm, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_algorithm: Option<KeyAlgorithm>,
    /// Lowercase hex SHA-256 of the key's `SubjectPublicKeyInfo`.
    pub key_fingerprint: String,
}

/// One slot's contents. `current` always has a certificate; `next` has only
/// a key between `csr_res` and `crt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The certificate PEM, if the slot has one.
    pub cert_pem: Option<String>,
    /// The PKCS#8 private key PEM.
    pub key_pem: String,
    /// The slot's metadata.
    pub meta: SlotMeta,
}

/// Both slots as [`Slots::load`] found them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlotState {
    /// The certificate the device uses; `None` before provisioning.
    pub current: Option<Slot>,
    /// A rotation in progress: a key awaiting its certificate, or a
    /// certificate not yet confirmed with `crt_ack`.
    pub next: Option<Slot>,
    /// The certificate `current` replaced (or, after a fall-back, the one
    /// that replaced it), kept until the cloud is known to have committed
    /// the rotation: its certificate refused while `current` connects.
    pub old: Option<Slot>,
}

/// The slot directory of one device.
#[derive(Clone)]
pub struct Slots {
    dir: PathBuf,
    fault: Option<FaultHook>,
}

impl std::fmt::Debug for Slots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots")
            .field("dir", &self.dir)
            .field("fault", &self.fault.is_some())
            .finish()
    }
}

impl Slots {
    /// The slots in `dir` (created if missing).
    ///
    /// # Errors
    /// [`SlotError::Io`] when the directory cannot be created.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Slots, SlotError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
        Ok(Slots { dir, fault: None })
    }

    /// The same slots with a fault hook (see [`FaultHook`]).
    pub fn with_fault_hook(mut self, hook: FaultHook) -> Slots {
        self.fault = Some(hook);
        self
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn step(&self, name: &str) -> Result<(), SlotError> {
        match &self.fault {
            Some(hook) if hook(name) => Err(SlotError::Crashed {
                step: name.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Finishes or undoes an interrupted operation, then reads both slots.
    /// A `next/` that is incomplete or whose key does not match its
    /// certificate is discarded.
    ///
    /// # Errors
    /// [`SlotError::Corrupt`] when `current/` exists but is unusable,
    /// [`SlotError::Io`] on file system errors.
    pub fn load(&self) -> Result<SlotState, SlotError> {
        self.recover()?;
        let current = if self.path(CURRENT).exists() {
            Some(read_slot(&self.path(CURRENT), true)?)
        } else {
            None
        };
        let next = if self.path(NEXT).exists() {
            match read_slot(&self.path(NEXT), false) {
                Ok(slot) => Some(slot),
                Err(e) => {
                    tracing::warn!(error = %e, "discarding unusable next slot");
                    self.discard_next()?;
                    None
                }
            }
        } else {
            None
        };
        let old = if current.is_some() && self.path(OLD).exists() {
            match read_slot(&self.path(OLD), true) {
                Ok(slot) => Some(slot),
                Err(e) => {
                    tracing::warn!(error = %e, "discarding unusable old slot");
                    self.discard(OLD)?;
                    None
                }
            }
        } else {
            None
        };
        Ok(SlotState { current, next, old })
    }

    fn recover(&self) -> Result<(), SlotError> {
        let entries = fs::read_dir(&self.dir).map_err(io("read directory", &self.dir))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") || name.ends_with(".discard") {
                remove_dir(&entry.path())?;
            }
        }
        let swap = self.path(SWAP);
        if swap.exists() {
            match (self.path(CURRENT).exists(), self.path(OLD).exists()) {
                // Crashed after the swap's second rename: finish it.
                (false, true) => rename(&swap, &self.path(CURRENT))?,
                // After its first rename: undo it.
                (true, false) => rename(&swap, &self.path(OLD))?,
                // Cannot happen (the renames never overwrite): keep both
                // slots that are in place.
                _ => remove_dir(&swap)?,
            }
            sync_dir(&self.dir)?;
        }
        let old = self.path(OLD);
        if old.exists() {
            if self.path(CURRENT).exists() {
                // The previous certificate, kept until the commit is
                // confirmed (or a crash after the promotion's second rename:
                // the same state).
            } else if self.path(NEXT).exists() && read_slot(&self.path(NEXT), true).is_ok() {
                // Crashed between the renames: the ack was sent, roll forward.
                rename(&self.path(NEXT), &self.path(CURRENT))?;
                sync_dir(&self.dir)?;
                remove_dir(&old)?;
            } else {
                rename(&old, &self.path(CURRENT))?;
                sync_dir(&self.dir)?;
            }
        }
        Ok(())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `slot` as the new `next/`, replacing any previous one.
    ///
    /// # Errors
    /// [`SlotError`] on file system errors or a simulated crash.
    pub fn write_next(&self, slot: &Slot) -> Result<(), SlotError> {
        let tmp = self.path("next.tmp");
        if tmp.exists() {
            remove_dir(&tmp)?;
        }
        self.step("create next.tmp")?;
        fs::create_dir(&tmp).map_err(io("create directory", &tmp))?;
        self.step("write next.tmp/key.pem")?;
        write_file(&tmp.join(KEY), slot.key_pem.as_bytes(), 0o600)?;
        if let Some(cert) = &slot.cert_pem {
            self.step("write next.tmp/cert.pem")?;
            write_file(&tmp.join(CERT), cert.as_bytes(), 0o644)?;
        }
        self.step("write next.tmp/meta.json")?;
        let meta = serde_json::to_vec_pretty(&slot.meta).map_err(|e| SlotError::Corrupt {
            path: tmp.clone(),
            reason: e.to_string(),
        })?;
        write_file(&tmp.join(META), &meta, 0o644)?;
        self.step("fsync next.tmp")?;
        sync_dir(&tmp)?;
        if self.path(NEXT).exists() {
            self.step("discard old next")?;
            self.discard_next()?;
        }
        self.step("rename next.tmp to next")?;
        rename(&tmp, &self.path(NEXT))?;
        self.step("fsync state directory")?;
        sync_dir(&self.dir)
    }

    /// Makes `next/` (which must hold a certificate) the new `current/`;
    /// the previous `current/` becomes `old/` and stays until
    /// [`confirm`](Self::confirm) (an older `old/` is removed first: the
    /// rotation that replaced it ended before this one could start).
    ///
    /// # Errors
    /// [`SlotError::Corrupt`] when `next/` has no usable certificate,
    /// [`SlotError`] on file system errors or a simulated crash.
    pub fn promote(&self) -> Result<(), SlotError> {
        read_slot(&self.path(NEXT), true)?;
        if self.path(CURRENT).exists() && self.path(OLD).exists() {
            self.step("remove previous old")?;
            self.discard(OLD)?;
        }
        if self.path(CURRENT).exists() {
            self.step("rename current to old")?;
            rename(&self.path(CURRENT), &self.path(OLD))?;
            self.step("fsync state directory (old)")?;
            sync_dir(&self.dir)?;
        }
        self.step("rename next to current")?;
        rename(&self.path(NEXT), &self.path(CURRENT))?;
        self.step("fsync state directory (current)")?;
        sync_dir(&self.dir)
    }

    /// Removes `old/`: the cloud has committed the rotation (the old
    /// certificate was refused while `current/` connects).
    ///
    /// # Errors
    /// [`SlotError`] on file system errors or a simulated crash.
    pub fn confirm(&self) -> Result<(), SlotError> {
        if self.path(OLD).exists() {
            self.step("remove old")?;
            self.discard(OLD)?;
        }
        Ok(())
    }

    /// Exchanges `current/` and `old/`: the current certificate is refused
    /// and the old one connects (the cloud removed the new certificate).
    /// The refused one is kept as `old/` until it is refused again while
    /// the other connects ([`confirm`](Self::confirm)).
    ///
    /// # Errors
    /// [`SlotError::Corrupt`] when there is no `old/` or `current/`,
    /// [`SlotError`] on file system errors or a simulated crash.
    pub fn swap(&self) -> Result<(), SlotError> {
        read_slot(&self.path(OLD), true)?;
        read_slot(&self.path(CURRENT), true)?;
        self.step("rename old to swap")?;
        rename(&self.path(OLD), &self.path(SWAP))?;
        self.step("rename current to old")?;
        rename(&self.path(CURRENT), &self.path(OLD))?;
        self.step("rename swap to current")?;
        rename(&self.path(SWAP), &self.path(CURRENT))?;
        self.step("fsync state directory (swap)")?;
        sync_dir(&self.dir)
    }

    /// Installs a certificate and key as `current/` (first provisioning or
    /// an import), through `next/` and [`promote`](Self::promote).
    ///
    /// # Errors
    /// [`SlotError::Corrupt`] when the key does not match the certificate,
    /// [`SlotError`] on file system errors.
    pub fn install(
        &self,
        cert_pem: &str,
        key_pem: &str,
        rotation_id: Option<RotationId>,
    ) -> Result<(), SlotError> {
        let (meta, _) = check_pair(&self.path(NEXT), cert_pem, key_pem)?;
        let meta = SlotMeta {
            rotation_id,
            ..meta
        };
        self.write_next(&Slot {
            cert_pem: Some(cert_pem.to_owned()),
            key_pem: key_pem.to_owned(),
            meta,
        })?;
        self.promote()?;
        // An installation replaces, it does not rotate: nothing to confirm.
        self.confirm()
    }

    /// Removes `next/` (renamed to `next.discard/` first, so a crash never
    /// leaves half of it).
    ///
    /// # Errors
    /// [`SlotError`] on file system errors.
    pub fn discard_next(&self) -> Result<(), SlotError> {
        self.discard(NEXT)
    }

    fn discard(&self, name: &str) -> Result<(), SlotError> {
        let next = self.path(name);
        if !next.exists() {
            return Ok(());
        }
        let trash = self.path(&format!("{name}.discard"));
        if trash.exists() {
            remove_dir(&trash)?;
        }
        rename(&next, &trash)?;
        sync_dir(&self.dir)?;
        remove_dir(&trash)
    }
}

/// Checks that `key_pem` is the key of `cert_pem`; returns the meta both
/// imply and the certificate id.
pub(crate) fn check_pair(
    path: &Path,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(SlotMeta, String), SlotError> {
    let corrupt = |reason: String| SlotError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let info = rules::csr::inspect_certificate(cert_pem).map_err(|e| corrupt(e.to_string()))?;
    let key = keys::key_from_pem(key_pem).map_err(|e| corrupt(e.to_string()))?;
    let fingerprint = keys::key_fingerprint(&key);
    if fingerprint != info.public_key_fingerprint {
        return Err(corrupt("the key does not match the certificate".to_owned()));
    }
    Ok((
        SlotMeta {
            rotation_id: None,
            certificate_id: Some(info.certificate_id.clone()),
            key_algorithm: None,
            key_fingerprint: fingerprint,
        },
        info.certificate_id,
    ))
}

fn read_slot(path: &Path, need_cert: bool) -> Result<Slot, SlotError> {
    let corrupt = |reason: String| SlotError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let read = |name: &str| fs::read_to_string(path.join(name));
    let meta_text = read(META).map_err(|e| corrupt(format!("{META}: {e}")))?;
    let meta: SlotMeta =
        serde_json::from_str(&meta_text).map_err(|e| corrupt(format!("{META}: {e}")))?;
    let key_pem = read(KEY).map_err(|e| corrupt(format!("{KEY}: {e}")))?;
    let cert_pem = match read(CERT) {
        Ok(cert) => Some(cert),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !need_cert => None,
        Err(e) => return Err(corrupt(format!("{CERT}: {e}"))),
    };
    match &cert_pem {
        Some(cert) => {
            let (_, id) = check_pair(path, cert, &key_pem)?;
            if meta.certificate_id.as_deref().is_some_and(|m| m != id) {
                return Err(corrupt("meta.json names another certificate".to_owned()));
            }
        }
        None => {
            let key = keys::key_from_pem(&key_pem).map_err(|e| corrupt(e.to_string()))?;
            if keys::key_fingerprint(&key) != meta.key_fingerprint {
                return Err(corrupt("meta.json names another key".to_owned()));
            }
        }
    }
    Ok(Slot {
        cert_pem,
        key_pem,
        meta,
    })
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SlotError {
    let path = path.to_owned();
    move |source| SlotError::Io {
        action,
        path,
        source,
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SlotError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(io("create", path))?;
    file.write_all(bytes).map_err(io("write", path))?;
    file.sync_all().map_err(io("fsync", path))
}

fn sync_dir(path: &Path) -> Result<(), SlotError> {
    #[cfg(unix)]
    {
        fs::File::open(path)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync directory", path))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), SlotError> {
    fs::rename(from, to).map_err(io("rename", from))
}

fn remove_dir(path: &Path) -> Result<(), SlotError> {
    fs::remove_dir_all(path).map_err(io("remove", path))
}
