//! Where the bundled model is. The workspace is found at run time (`cargo test` sets
//! CARGO_MANIFEST_DIR): cargo reuses a test binary built in another checkout of the same
//! project, so a path baked in at compile time can point at a checkout that is gone.

use std::path::PathBuf;

pub fn served() -> PathBuf {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    crate_dir.join("../models/SmolLM2-135M-Instruct.Q4_1.gguf")
}
