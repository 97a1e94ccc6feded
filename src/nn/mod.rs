//! Layers and the model.

mod googlenet;
mod inception;
mod layers;
mod params;

pub use googlenet::{
    format_summary, GoogLeNet, GoogLeNetConfig, LayerGeometry, Mode, StageSummary,
};
pub use inception::{Inception, InceptionChannels};
pub use layers::{Conv2d, Linear};
pub use params::{Init, ParamBuilder, ParamId, Parameter, Parameters};
