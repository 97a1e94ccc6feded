//! Reverse-mode differentiation: the tape (tape.rs) records each forward op's backward,
//! and the parameters (params.rs) are what it differentiates with respect to.

mod params;
mod tape;

pub use params::{ParamId, Parameter, Parameters};
pub use tape::{ChannelOutput, Gradients, Tape, Var};
