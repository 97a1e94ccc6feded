//! `train --resume` with settings: a resumed run never silently mixes two configs.
//!
//! The requested config (the checkpoint's, with the flags given laid over it) is
//! compared with the saved one field by field, as JSON values, so every field counts,
//! including fields added to `TrainConfig` later. Allowed: a larger `epochs` (the run
//! is extended), and `log_every` / `save_every`, which only change what is reported and
//! checkpointed, not what is computed. Any other difference is refused, named.

use anyhow::{bail, Result};
use serde_json::Value;

use super::config::TrainConfig;

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
