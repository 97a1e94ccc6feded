//! The learning rate of each optimizer step.
//!
//! `constant`: `lr` at every step (the tutorial's). `cosine`: a linear warm-up from
//! `lr / warmup` to `lr` over the first `warmup` steps, then a half cosine from `lr`
//! down to `lr · min_fraction` at the last step:
//!
//!   step s (0-based) < warmup:  lr · (s + 1) / warmup
//!   otherwise, with t = (s - warmup) / max(total - warmup - 1, 1) in [0, 1]:
//!       lr · (min_fraction + (1 - min_fraction) · (1 + cos(π t)) / 2)
//!
//! It depends only on the step, so a resumed run takes the same rates.

use std::fmt;

use anyhow::{ensure, Result};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// How the learning rate moves over a run (`Schedule` adds its parameters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    #[default]
    Constant,
    Cosine,
}

impl fmt::Display for ScheduleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScheduleKind::Constant => "constant",
            ScheduleKind::Cosine => "cosine",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    Constant,
    Cosine { warmup: u64, min_fraction: f64 },
}

impl Schedule {
    /// The schedule of `kind` with its parameters, checked.
    pub fn new(kind: ScheduleKind, warmup: u64, min_fraction: f64) -> Result<Schedule> {
        ensure!(
            (0.0..=1.0).contains(&min_fraction),
            "--min-lr-fraction must be in [0, 1], got {min_fraction}"
        );
        Ok(match kind {
            ScheduleKind::Constant => Schedule::Constant,
            ScheduleKind::Cosine => Schedule::Cosine {
                warmup,
                min_fraction,
            },
        })
    }

    /// The rate for 0-based `step` of a run of `total` steps whose peak rate is `lr`.
    pub fn lr(&self, lr: f64, step: u64, total: u64) -> f64 {
        match *self {
            Schedule::Constant => lr,
            Schedule::Cosine {
                warmup,
                min_fraction,
            } => {
                if step < warmup {
                    return lr * (step + 1) as f64 / warmup as f64;
                }
                let span = total.saturating_sub(warmup + 1).max(1);
                let t = ((step - warmup) as f64 / span as f64).min(1.0);
                let cosine = (1.0 + (std::f64::consts::PI * t).cos()) / 2.0;
                lr * (min_fraction + (1.0 - min_fraction) * cosine)
            }
        }
    }
}
