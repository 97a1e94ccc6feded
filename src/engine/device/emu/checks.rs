//! Which checks the emulator makes, from GOOGLENET_EMU_CHECK: a comma-separated list of
//! `race` (shared-memory hazards), `init` (reads of memory nothing wrote) and `order`
//! (blocks that depend on each other), or `all`. Unset or empty: none.

use std::sync::OnceLock;

use anyhow::{bail, Result};

/// The variable that turns the checks on for every emulated launch.
pub const VARIABLE: &str = "GOOGLENET_EMU_CHECK";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checks {
    /// Shared-memory races between the threads of a block (see cuda_emu.h).
    pub race: bool,
    /// Kernels reading, and downloads of, device memory that nothing wrote.
    pub init: bool,
    /// Results that change when the blocks of a launch run in another order.
    pub order: bool,
}

impl Checks {
    pub const NONE: Checks = Checks {
        race: false,
        init: false,
        order: false,
    };
    pub const ALL: Checks = Checks {
        race: true,
        init: true,
        order: true,
    };

    /// Parses a value of GOOGLENET_EMU_CHECK.
    pub fn parse(text: &str) -> Result<Checks> {
        let mut checks = Checks::NONE;
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "race" => checks.race = true,
                "init" => checks.init = true,
                "order" => checks.order = true,
                "all" => checks = Checks::ALL,
                other => bail!(
                    "{VARIABLE}={text:?}: unknown check {other:?} (expected race, init, order \
                     or all, comma-separated)"
                ),
            }
        }
        Ok(checks)
    }

    /// The checks GOOGLENET_EMU_CHECK asks for, read once per process.
    pub fn from_environment() -> Result<Checks> {
        static CHECKS: OnceLock<Result<Checks, String>> = OnceLock::new();
        let checks = CHECKS.get_or_init(|| match std::env::var(VARIABLE) {
            Ok(text) => Checks::parse(&text).map_err(|e| e.to_string()),
            Err(std::env::VarError::NotPresent) => Ok(Checks::NONE),
            Err(e) => Err(format!("{VARIABLE}: {e}")),
        });
        match checks {
            Ok(checks) => Ok(*checks),
            Err(message) => bail!("{message}"),
        }
    }
}
