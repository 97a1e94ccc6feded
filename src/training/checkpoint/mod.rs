//! Checkpoints: the files (files.rs: weights and Adam's moments as safetensors under
//! PyTorch's names, written atomically) and the run's state beside them (state.rs).

mod files;
mod state;

pub(crate) use files::parse_groups;
pub use files::{
    clear_leftovers, load, load_weights, model_file, remove, save, Leftover, Loaded, MODEL_FILE,
    OPTIMIZER_FILE, STATE_FILE,
};
pub use state::{prune_step_checkpoints, resume, save_run, start_state, RunState};
