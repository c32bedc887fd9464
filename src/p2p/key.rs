//! The node's stable ed25519 key, kept beside the store as `<db_file>.p2p.key` (libp2p's
//! protobuf key encoding, file mode 0600, created once).
//!
//! Never: overwrites an existing key file, or starts with a key it could not read.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

use super::P2pError;

/// `<db_file>.p2p.key`.
pub(super) fn key_path(db_file: &Path) -> PathBuf {
    let mut name = db_file.as_os_str().to_owned();
    name.push(".p2p.key");
    PathBuf::from(name)
}

/// Reads the key at `path`, creating it first if there is none.
pub(super) fn load_or_create(path: &Path) -> Result<Keypair, P2pError> {
    let io = |source| P2pError::Key {
        path: path.to_owned(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            let keypair = Keypair::from_protobuf_encoding(&bytes)
                .map_err(|_| P2pError::KeyDecode(path.to_owned()))?;
            if keypair.key_type() != libp2p::identity::KeyType::Ed25519 {
                return Err(P2pError::KeyDecode(path.to_owned()));
            }
            Ok(keypair)
        }
        Err(error) if error.kind() == ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .map_err(|_| P2pError::KeyDecode(path.to_owned()))?;
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            file.write_all(&bytes).map_err(io)?;
            file.sync_all().map_err(io)?;
            Ok(keypair)
        }
        Err(error) => Err(io(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(&dir.path().join("sentrypeer.db"));
        assert!(path.ends_with("sentrypeer.db.p2p.key"));
        let first = load_or_create(&path).unwrap();
        let second = load_or_create(&path).unwrap();
        assert_eq!(first.public(), second.public());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(load_or_create(&path), Err(P2pError::KeyDecode(_))));
    }
}
