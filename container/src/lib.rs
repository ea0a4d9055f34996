//! The runner: runs one OCI runtime-spec bundle.
