//! What a run's last lines say, summed up from its metrics.

use super::log::Record;

/// What a run's last lines say, from its `Epoch` records.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The last epoch's test accuracy.
    pub final_test_accuracy: f64,
    /// The best epoch (1-based) and its test accuracy; the earliest of equals.
    pub best_epoch: usize,
    pub best_test_accuracy: f64,
    /// Seconds spent training (evaluation excluded) and training images per second.
    pub train_seconds: f64,
    pub images_per_s: f64,
}

impl Summary {
    /// None when no epoch has finished.
    pub fn from_records(records: &[Record]) -> Option<Summary> {
        let mut summary: Option<Summary> = None;
        let mut images = 0.0;
        for record in records {
            let Record::Epoch {
                epoch,
                test_accuracy,
                epoch_time_s,
                images_per_s,
                ..
            } = *record
            else {
                continue;
            };
            images += images_per_s * epoch_time_s;
            let s = summary.get_or_insert(Summary {
                final_test_accuracy: test_accuracy,
                best_epoch: epoch,
                best_test_accuracy: test_accuracy,
                train_seconds: 0.0,
                images_per_s: 0.0,
            });
            s.final_test_accuracy = test_accuracy;
            if test_accuracy > s.best_test_accuracy {
                (s.best_epoch, s.best_test_accuracy) = (epoch, test_accuracy);
            }
            s.train_seconds += epoch_time_s;
            s.images_per_s = images / s.train_seconds.max(1e-9);
        }
        summary
    }
}

/// `seconds` as "9 min 32 s" (or "41 s", or "2 h 05 min").
pub fn format_duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}
