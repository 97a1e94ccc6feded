//! `train --resume` with settings: a resumed run never silently mixes two configs.
//!
//! The requested config (the checkpoint's, with the flags given laid over it) is
//! compared with the saved one field by field, as JSON values, so every field counts,
//! including fields added to `TrainConfig` later. Allowed: a larger `epochs` (the run
//! is extended), and `log_every` / `save_every`, which only change what is reported and
//! checkpointed, not what is computed. Any other difference is refused, named.
//!
//! The data set read now must be the one the run started on, as a model sees it
//! (`same_data`): a folder whose classes or images changed since is refused.

use anyhow::{bail, Result};
use serde_json::Value;

use super::config::TrainConfig;
use crate::data::DataDescription;

/// Fields a resumed run may change, and why.
const CHANGEABLE: [(&str, &str); 3] = [
    ("log_every", "reporting only"),
    ("save_every", "checkpointing only"),
    ("no_graph", "how the steps are launched only"),
];

/// The flag that sets a config field (`image_size` → `--image-size`).
fn flag(field: &str) -> String {
    format!("--{}", field.replace('_', "-"))
}

fn show(value: &Value) -> String {
    match value {
        Value::Null => "none".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The config a resumed run continues with, and a line for each change it accepted;
/// an error naming every field where `requested` contradicts `saved`.
pub fn resume_config(
    saved: &TrainConfig,
    requested: &TrainConfig,
) -> Result<(TrainConfig, Vec<String>)> {
    let (Value::Object(old), Value::Object(new)) = (
        serde_json::to_value(saved)?,
        serde_json::to_value(requested)?,
    ) else {
        bail!("a training config is not a JSON object");
    };
    let mut notes = Vec::new();
    let mut conflicts = Vec::new();
    for (field, was) in &old {
        let now = new.get(field).unwrap_or(&Value::Null);
        if now == was {
            continue;
        }
        let change = format!(
            "{} {} (the checkpoint has {})",
            flag(field),
            show(now),
            show(was)
        );
        if field == "epochs" && requested.epochs > saved.epochs {
            notes.push(format!(
                "{change}: the run is extended to {} epochs",
                requested.epochs
            ));
        } else if let Some((_, why)) = CHANGEABLE.iter().find(|(f, _)| f == field) {
            notes.push(format!("{change}: accepted, it changes {why}"));
        } else {
            conflicts.push(change);
        }
    }
    if !conflicts.is_empty() {
        bail!(
            "--resume: these settings contradict the checkpoint's: {}. A resumed run \
             continues with the saved settings (only a larger --epochs, --log-every and \
             --save-every may change); drop those flags, or start a new run",
            conflicts.join("; ")
        );
    }
    Ok((requested.clone(), notes))
}

/// Fails, naming what differs, unless the data set read now (`now`) is the one the
/// checkpoint's run trained on (`saved`): its classes, channels, store side and
/// per-channel statistics.
pub fn same_data(saved: &DataDescription, now: &DataDescription) -> Result<()> {
    let mut differences = Vec::new();
    if saved.classes != now.classes {
        differences.push(format!(
            "classes {:?} (the checkpoint has {:?})",
            now.classes, saved.classes
        ));
    }
    if (saved.channels, saved.store_side) != (now.channels, now.store_side) {
        differences.push(format!(
            "{} channel(s) at {s}x{s} (the checkpoint has {} at {t}x{t})",
            now.channels,
            saved.channels,
            s = now.store_side,
            t = saved.store_side
        ));
    }
    if (&saved.mean, &saved.std) != (&now.mean, &now.std) {
        differences.push(format!(
            "pixel means {:?} and deviations {:?} (the checkpoint has {:?} and {:?}: the \
             training images changed)",
            now.mean, now.std, saved.mean, saved.std
        ));
    }
    if !differences.is_empty() {
        bail!(
            "--resume: the data set is not the one the run trained on: {}",
            differences.join("; ")
        );
    }
    Ok(())
}
