//! Writing files so that a run that dies never leaves one half-written: everything goes to a
//! temporary file beside its destination, is flushed to disk, then renamed into place.

use anyhow::{anyhow, Result};
use std::path::Path;

/// Write `path` through `write`, which fills a hidden temporary file beside it (keeping the
/// extension: image encoders pick the format from it); the file then replaces `path` at once.
pub fn write_via_tmp(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| anyhow!("{}: not a file path", path.display()))?.to_string_lossy();
    let ext = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp{ext}", std::process::id()));
    let result = write(&tmp).and_then(|()| {
        // Flushed before the rename, so a crash cannot leave the new name on missing data.
        std::fs::File::open(&tmp).and_then(|f| f.sync_all())?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    });
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        if disk_full(&e) {
            return Err(anyhow!(
                "no space left on {}: free some space there and run again (the files written before are whole)",
                dir.display()
            ));
        }
        return Err(anyhow!("{}: cannot write ({e})", path.display()));
    }
    Ok(())
}

/// Whether an error comes from a full disk (however deep: the picture encoders wrap it).
fn disk_full(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::StorageFull))
        || format!("{e:#}").contains("No space left on device")
}

/// Write `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_tmp(path, |tmp| Ok(std::fs::write(tmp, bytes)?))
}
