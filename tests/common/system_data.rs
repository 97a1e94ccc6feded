//! Debian's dataset-fashion-mnist, for the tests that read the real files.

use std::path::Path;

/// Where the package installs the four files.
pub const SYSTEM_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Whether the package is installed; says SKIPPED when not. CI installs it: there, its
/// absence is a broken set-up, not a skip.
pub fn present() -> bool {
    if Path::new(SYSTEM_DIR).is_dir() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{SYSTEM_DIR} is missing in CI"
    );
    eprintln!("SKIPPED: {SYSTEM_DIR} does not exist (apt-get install dataset-fashion-mnist)");
    false
}
