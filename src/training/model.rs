//! The model a data set gets: the tutorial's GoogLeNet with the set's channels in
//! `conv1` and its classes in `fc`.

use crate::data::DataDescription;
use crate::engine::nn::GoogLeNetConfig;

pub fn model_config(data: &DataDescription) -> GoogLeNetConfig {
    GoogLeNetConfig {
        in_channels: data.channels,
        classes: data.classes.len(),
        ..GoogLeNetConfig::default()
    }
}
