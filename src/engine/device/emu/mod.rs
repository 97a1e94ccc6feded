//! The emulated GPU: the CUDA kernels of kernels/ compiled for the host (build.rs), run
//! on the CPU by the emulator in kernels/emu/, with host memory standing in for device
//! memory. driver.rs is the `Driver`; launch.rs one launch (arguments, the C entry
//! points); checks.rs, checked.rs and shadow.rs the sanitizer checks
//! (GOOGLENET_EMU_CHECK); asan.rs the emulator built with AddressSanitizer
//! (GOOGLENET_EMU_ASAN=1).

mod asan;
mod checked;
mod checks;
mod driver;
mod launch;
mod shadow;

pub use checks::Checks;
pub use driver::EmuDriver;
