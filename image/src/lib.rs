//! Content-addressed OCI image store.
