//! Checkpoints: a directory holding
//!   `model.safetensors`      the weights under PyTorch's names (loads into the
//!                            tutorial's model with `load_state_dict(strict=True)`),
//!   `optimizer.safetensors`  Adam's moments (`exp_avg.<name>`, `exp_avg_sq.<name>`),
//!   `state.json`             the run's state: step, epoch, config, seed.
//! The directory is written under a temporary name (`.NAME.tmp`), its files and the
//! directory itself flushed to the disk (fsync), then renamed into place and the parent
//! flushed, so a kill or a power loss leaves either the old checkpoint or the new one,
//! never half of one. A save that fails (a full disk) removes its temporary directory
//! and leaves the previous checkpoints as they were. What a killed save leaves behind
//! (`.NAME.tmp`, `.NAME.old`, `.NAME.del`) is cleared by `clear_leftovers`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::engine::autograd::Parameters;
use crate::engine::optim::Adam;
use crate::engine::tensor::Tensor;

pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "state.json";

/// Named f32 tensors as safetensors bytes.
fn serialize(named: &[(String, &Tensor)]) -> Result<Vec<u8>> {
    let host: Vec<(String, Vec<usize>, Vec<f32>)> = named
        .iter()
        .map(|(name, t)| Ok((name.clone(), t.shape().to_vec(), t.to_vec()?)))
        .collect::<Result<_>>()?;
    let views = host
        .iter()
        .map(|(name, shape, data)| {
            let bytes: &[u8] = bytemuck::cast_slice(data);
            Ok((
                name.as_str(),
                TensorView::new(Dtype::F32, shape.clone(), bytes)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(safetensors::serialize(views, None)?)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file =
        fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Flushes a directory's entries (names created, renamed, removed) to the disk.
fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot flush {} to the disk", dir.display()))
}

/// `dir`'s parent and the hidden sibling `.NAME.<suffix>` used while it changes.
fn sibling(dir: &Path, suffix: &str) -> Result<(PathBuf, PathBuf)> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .with_context(|| format!("checkpoint path {} has no file name", dir.display()))?;
    let hidden = parent.join(format!(".{}.{suffix}", name.to_string_lossy()));
    Ok((parent.to_path_buf(), hidden))
}

/// Writes a checkpoint directory at `dir` (replacing one that is there). On an error
/// the temporary directory is removed and whatever was at `dir` stays.
pub fn save(dir: &Path, params: &Parameters, adam: &Adam, state_json: &str) -> Result<()> {
    let (parent, tmp) = sibling(dir, "tmp")?;
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
    }
    fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let written = write_files(&tmp, params, adam, state_json).and_then(|()| sync_dir(&tmp));
    if let Err(err) = written {
        let _ = fs::remove_dir_all(&tmp);
        return Err(err);
    }
    // A directory cannot be renamed onto a non-empty one: the old checkpoint steps
    // aside first (`clear_leftovers` puts it back if a kill comes in between).
    let (_, old) = sibling(dir, "old")?;
    let replacing = dir.exists();
    if replacing {
        fs::rename(dir, &old).with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    if let Err(err) = fs::rename(&tmp, dir) {
        if replacing {
            let _ = fs::rename(&old, dir);
        }
        let _ = fs::remove_dir_all(&tmp);
        return Err(err)
            .with_context(|| format!("cannot move {} to {}", tmp.display(), dir.display()));
    }
    sync_dir(&parent)?;
    if replacing {
        fs::remove_dir_all(&old).with_context(|| format!("cannot remove {}", old.display()))?;
    }
    Ok(())
}

fn write_files(tmp: &Path, params: &Parameters, adam: &Adam, state_json: &str) -> Result<()> {
    let weights: Vec<(String, &Tensor)> =
        params.iter().map(|p| (p.name.clone(), &p.value)).collect();
    write_synced(&tmp.join(MODEL_FILE), &serialize(&weights)?)?;
    let (m, v) = adam.moments();
    let mut moments = Vec::new();
    for (p, (m, v)) in params.iter().zip(m.iter().zip(v)) {
        moments.push((format!("exp_avg.{}", p.name), m));
        moments.push((format!("exp_avg_sq.{}", p.name), v));
    }
    write_synced(&tmp.join(OPTIMIZER_FILE), &serialize(&moments)?)?;
    write_synced(&tmp.join(STATE_FILE), state_json.as_bytes())
}

/// Removes a checkpoint directory so that a kill midway leaves no torn checkpoint:
/// it is renamed to `.NAME.del` (flushed) before its files go.
pub fn remove(dir: &Path) -> Result<()> {
    let (parent, del) = sibling(dir, "del")?;
    fs::rename(dir, &del).with_context(|| format!("cannot remove {}", dir.display()))?;
    sync_dir(&parent)?;
    fs::remove_dir_all(&del).with_context(|| format!("cannot remove {}", del.display()))
}

/// What `clear_leftovers` did with one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leftover {
    /// A save's or a removal's unfinished directory, deleted.
    Removed(PathBuf),
    /// A checkpoint that had stepped aside for its replacement, which never came:
    /// moved back to its name.
    Restored(PathBuf),
}

/// Clears what killed saves and removals left in the checkpoints directory `dir`
/// (which may not exist yet). Call it while holding the run's lock, so no other
/// process is writing there.
pub fn clear_leftovers(dir: &Path) -> Result<Vec<Leftover>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut done = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let Some(hidden) = name.strip_prefix('.') else {
            continue;
        };
        if let Some(checkpoint) = hidden.strip_suffix(".old") {
            let target = dir.join(checkpoint);
            if !target.exists() {
                fs::rename(&path, &target)
                    .with_context(|| format!("cannot restore {}", target.display()))?;
                done.push(Leftover::Restored(target));
                continue;
            }
        } else if !(hidden.ends_with(".tmp") || hidden.ends_with(".del")) {
            continue;
        }
        fs::remove_dir_all(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        done.push(Leftover::Removed(path));
    }
    if !done.is_empty() {
        sync_dir(dir)?;
    }
    Ok(done)
}

/// The file holding the weights: `path` itself, or `model.safetensors` inside it.
pub fn model_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(MODEL_FILE)
    } else {
        path.to_path_buf()
    }
}

/// Reads the tensors of `groups` (each a name prefix) from `file`, each group in
/// `params`' order, refusing any name, dtype or shape that differs, and any extra tensor.
fn read_groups(file: &Path, params: &Parameters, groups: &[&str]) -> Result<Vec<Vec<Tensor>>> {
    let bytes = fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    parse_groups(&file.display().to_string(), &bytes, params, groups)
}

/// `read_groups` on a file's content; `origin` names it in errors.
pub(crate) fn parse_groups(
    origin: &str,
    bytes: &[u8],
    params: &Parameters,
    groups: &[&str],
) -> Result<Vec<Vec<Tensor>>> {
    let device = params
        .iter()
        .next()
        .context("model has no parameters")?
        .value
        .device()
        .clone();
    let tensors = SafeTensors::deserialize(bytes)
        .with_context(|| format!("{origin} is not a safetensors file"))?;
    let mut problems = Vec::new();
    let mut expected = Vec::new();
    let mut out = Vec::new();
    for prefix in groups {
        let mut group = Vec::new();
        for p in params.iter() {
            let name = format!("{prefix}{}", p.name);
            match tensors.tensor(&name) {
                Err(_) => problems.push(format!("missing {name}")),
                Ok(view) if view.dtype() != Dtype::F32 => {
                    problems.push(format!("{name} is {:?}, expected F32", view.dtype()))
                }
                Ok(view) if view.shape() != p.value.shape() => problems.push(format!(
                    "{name} has shape {:?}, expected {:?}",
                    view.shape(),
                    p.value.shape()
                )),
                Ok(view) => {
                    let data = view
                        .data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    group.push(Tensor::from_vec(&device, view.shape(), data)?);
                }
            }
            expected.push(name);
        }
        out.push(group);
    }
    let mut unexpected: Vec<&str> = tensors
        .names()
        .into_iter()
        .filter(|n| !expected.iter().any(|e| e == n))
        .collect();
    unexpected.sort();
    problems.extend(unexpected.iter().map(|n| format!("unexpected {n}")));
    if !problems.is_empty() {
        let more = problems.len().saturating_sub(6);
        problems.truncate(6);
        bail!(
            "{origin} is not a checkpoint of this model: {}{}",
            problems.join("; "),
            if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            }
        );
    }
    Ok(out)
}

/// Loads weights saved by `save` (a checkpoint directory or its model file) into
/// `params`, refusing a file whose names, dtypes or shapes differ from the model's.
pub fn load_weights(path: &Path, params: &mut Parameters) -> Result<()> {
    let file = model_file(path);
    ensure!(file.exists(), "no checkpoint at {}", file.display());
    let weights = read_groups(&file, params, &[""])?.remove(0);
    params.set_all(weights)
}

/// What a checkpoint directory holds besides the weights.
pub struct Loaded {
    pub exp_avg: Vec<Tensor>,
    pub exp_avg_sq: Vec<Tensor>,
    pub state_json: String,
}

/// Loads a checkpoint directory: the weights go into `params`; the moments and the
/// run state are returned for the optimizer and the training loop.
pub fn load(dir: &Path, params: &mut Parameters) -> Result<Loaded> {
    ensure!(
        dir.is_dir(),
        "{} is not a checkpoint directory",
        dir.display()
    );
    load_weights(dir, params)?;
    let mut moments = read_groups(
        &dir.join(OPTIMIZER_FILE),
        params,
        &["exp_avg.", "exp_avg_sq."],
    )?;
    let exp_avg_sq = moments.pop().expect("two groups");
    let exp_avg = moments.pop().expect("two groups");
    let state_file = dir.join(STATE_FILE);
    let state_json = fs::read_to_string(&state_file)
        .with_context(|| format!("cannot read {}", state_file.display()))?;
    Ok(Loaded {
        exp_avg,
        exp_avg_sq,
        state_json,
    })
}
