//! A run with a time budget (`--time-budget MINUTES`): as many steps as fit.
//!
//! The run times its steps `CALIBRATION_START..CALIBRATION_END` (after the first, which
//! warm up allocators and record the step graph), then fixes how many steps it takes
//! in all: those that fit in what is left of the budget, less what its evaluations
//! and checkpoints will take, and no more than its epochs allow. The plan is saved
//! in every checkpoint, so a resumed run takes the same steps; the learning-rate
//! schedule spans the planned steps, and the run ends after the last of them with an
//! evaluation and a checkpoint, mid-epoch if it falls there.
//!
//! Steps can run slower than those timed (a shared machine's speed drifts by a fifth
//! within minutes), so the plan also sets a deadline: the moment the budget, less the
//! last evaluation and checkpoint, runs out. A run that reaches it before its planned
//! steps ends there, cutting the schedule's tail (where the rate is near its floor)
//! rather than overrunning the budget.
//!
//! The schedule must not need the run's length before the plan exists: a cosine
//! schedule's warm-up (which does not) must last until `CALIBRATION_END`.

/// The first step timed (1-based count of steps done), and the one the plan is made
/// after.
pub const CALIBRATION_START: u64 = 8;
pub const CALIBRATION_END: u64 = 40;

/// Share of the budget planned for, against steps that run slower than those timed.
const SAFETY: f64 = 0.97;

/// An evaluation image costs about this share of a training image (forward only, in
/// larger batches), with room to spare.
const EVAL_COST: f64 = 0.4;

/// Seconds a checkpoint takes to write (6M parameters, Adam's moments: 72 MB), with
/// room to spare.
const SAVE_SECONDS: f64 = 2.0;

/// What the plan is made from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlanInputs {
    pub budget_seconds: f64,
    /// Seconds since the run started, and the steps done by then.
    pub elapsed_seconds: f64,
    pub steps_done: u64,
    /// A step's measured time and its images.
    pub step_seconds: f64,
    pub batch_size: usize,
    pub batches_per_epoch: u64,
    /// The most steps the run's epochs allow.
    pub max_steps: u64,
    pub test_images: usize,
}

/// The steps the run takes in all: the most, from those done up to `max_steps`, for
/// which
///
///   steps ≤ done + (budget · SAFETY - elapsed - evals · (eval + save)) / step
///
/// where `evals` is the number of epoch ends they reach (each evaluated and saved, the
/// last perhaps partial). The right side only falls as the steps grow, so the steps
/// that fit are those up to one point, found by bisection.
pub fn planned_steps(p: &PlanInputs) -> u64 {
    let fits = |steps: u64| {
        let epoch_ends = steps.div_ceil(p.batches_per_epoch.max(1));
        let reserve = epoch_ends as f64 * epoch_end_seconds(p);
        let left = p.budget_seconds * SAFETY - p.elapsed_seconds - reserve;
        (steps - p.steps_done) as f64 * p.step_seconds <= left
    };
    let max = p.max_steps.max(p.steps_done);
    let (mut low, mut high) = (p.steps_done, max);
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        if fits(mid) {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    low
}

/// Seconds since the run started after which it must end (evaluate, save, stop) to
/// stay within its budget.
pub fn deadline_seconds(p: &PlanInputs) -> f64 {
    p.budget_seconds - epoch_end_seconds(p)
}

/// What an epoch's end costs: the evaluation and the checkpoint.
fn epoch_end_seconds(p: &PlanInputs) -> f64 {
    let per_image = p.step_seconds / p.batch_size.max(1) as f64;
    p.test_images as f64 * per_image * EVAL_COST + SAVE_SECONDS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> PlanInputs {
        PlanInputs {
            budget_seconds: 600.0,
            elapsed_seconds: 10.0,
            steps_done: 40,
            step_seconds: 0.1,
            batch_size: 50,
            batches_per_epoch: 1000,
            max_steps: 100_000,
            test_images: 10_000,
        }
    }

    #[test]
    fn the_plan_fills_the_budget_less_its_evaluations() {
        // 582 s planned for, 10 gone. An evaluation: 10,000 images at 2 ms · 0.4 = 8 s,
        // and 2 s to save. Six epoch ends leave 512 s: 5,120 steps, which reach 6 epoch
        // ends (5,160 steps in all).
        assert_eq!(planned_steps(&inputs()), 5_160);
        // Epochs allow fewer: all of them.
        let capped = PlanInputs {
            max_steps: 3_000,
            ..inputs()
        };
        assert_eq!(planned_steps(&capped), 3_000);
    }

    #[test]
    fn a_budget_already_spent_ends_the_run_where_it_is() {
        let spent = PlanInputs {
            elapsed_seconds: 900.0,
            ..inputs()
        };
        assert_eq!(planned_steps(&spent), 40);
    }

    #[test]
    fn the_deadline_leaves_the_last_evaluation_and_checkpoint() {
        // 600 s, less 8 s of evaluation and 2 s of saving.
        assert!((deadline_seconds(&inputs()) - 590.0).abs() < 1e-9);
    }
}
