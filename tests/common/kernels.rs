//! Whether this build embedded GPU code, for the tests that read it.

use googlenet::engine::device::kernels::{self, MODULES};

/// Whether this build has GPU code; fails in CI when it has none.
pub fn has_kernels(test: &str) -> bool {
    if !MODULES.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI builds must embed the GPU kernels, but this one has {}",
        kernels::GPU_CODE
    );
    eprintln!("{test}: skipped, this build has {}", kernels::GPU_CODE);
    false
}
