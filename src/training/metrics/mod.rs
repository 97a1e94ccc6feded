//! What a run reports: its records and the JSON-lines file they go to (log.rs), the
//! summary its last lines print (summary.rs), and its plots (plot.rs).

mod log;
mod plot;
mod summary;

pub use log::{read_records, MetricsLog, Record};
pub use plot::{plot_confusion, plot_metrics, CONFUSION_SIZE, SIZE};
pub use summary::{format_duration, Summary};
