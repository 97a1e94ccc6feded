//! Layers and the model: Conv2d and Linear (layers.rs), how their weights are drawn
//! (init.rs), the Inception block (inception.rs) and GoogLeNet (googlenet.rs).

mod googlenet;
mod inception;
mod init;
mod layers;

pub use googlenet::{format_summary, GoogLeNet, GoogLeNetConfig, Mode, StageSummary};
pub use inception::{Inception, InceptionChannels};
pub use init::{Init, ParamBuilder};
pub use layers::{Conv2d, LayerGeometry, Linear};
