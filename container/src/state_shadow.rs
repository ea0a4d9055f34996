//! libcontainer writes a container's `state.json` by truncating and
//! rewriting it, so a runtime killed mid-write leaves it torn. After every
//! change the runner keeps an atomic copy (temp file, fsync, rename), and
//! before reading it puts that copy back if `state.json` does not parse:
//! the state seen is always the last complete one.

use std::fs;
use std::io::Write;
use std::path::Path;

const STATE: &str = "state.json";
const SHADOW: &str = "state.complete.json";

/// Records the current `state.json` as the last complete state, if it is.
pub(crate) fn save(dir: &Path) {
    let Ok(bytes) = fs::read(dir.join(STATE)) else {
        return;
    };
    if serde_json::from_slice::<serde_json::Value>(&bytes).is_err() {
        return;
    }
    if let Err(e) = write_atomically(dir, SHADOW, &bytes) {
        tracing::warn!(?dir, "keeping a copy of the container state: {e}");
    }
}

/// Puts the last complete state back if `state.json` is torn; returns
/// whether it did.
pub(crate) fn restore_if_torn(dir: &Path) -> bool {
    let state = dir.join(STATE);
    let torn = match fs::read(&state) {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes).is_err(),
        Err(_) => false, // absent: not created yet, or deleted
    };
    if !torn {
        return false;
    }
    let Ok(copy) = fs::read(dir.join(SHADOW)) else {
        return false;
    };
    match write_atomically(dir, STATE, &copy) {
        Ok(()) => {
            tracing::warn!(
                ?dir,
                "state.json was torn; restored the last complete state"
            );
            true
        }
        Err(e) => {
            tracing::warn!(?dir, "restoring the container state: {e}");
            false
        }
    }
}

fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_state_is_replaced_by_the_last_complete_one() {
        let dir = std::env::temp_dir().join(format!("isola-shadow-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let complete = br#"{"id":"c1","status":"running"}"#;
        fs::write(dir.join(STATE), complete).unwrap();
        save(&dir);
        assert!(!restore_if_torn(&dir), "an intact state is left alone");
        fs::write(dir.join(STATE), &complete[..10]).unwrap();
        assert!(restore_if_torn(&dir));
        assert_eq!(fs::read(dir.join(STATE)).unwrap(), complete);
        // A torn write is never saved as "complete".
        fs::write(dir.join(STATE), b"{\"id\":").unwrap();
        save(&dir);
        assert!(restore_if_torn(&dir));
        assert_eq!(fs::read(dir.join(STATE)).unwrap(), complete);
        fs::remove_dir_all(&dir).unwrap();
    }
}
