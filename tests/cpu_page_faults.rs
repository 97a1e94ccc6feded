//! A steady-state CPU training step reuses the memory the step before it freed,
//! instead of faulting in fresh pages (which the kernel zeroes on first touch).
//! One test binary of its own: page faults are counted for the whole process.

use googlenet::training::step::train_step;
use googlenet::{Adam, Device, GoogLeNet, GoogLeNetConfig, Init, Labels, Tensor};

/// Minor page faults of this process so far.
fn minor_faults() -> i64 {
    // SAFETY: plain syscall with a valid out-pointer.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    usage.ru_minflt
}

#[test]
fn a_steady_state_step_faults_in_almost_no_fresh_pages() -> anyhow::Result<()> {
    let device = Device::cpu();
    let (batch, size) = (16, 96);
    let (net, mut params) =
        GoogLeNet::new(&device, GoogLeNetConfig::default(), Init::PyTorchDefault, 0)?;
    let mut adam = Adam::new(&params, 1e-3)?;
    let pixels = (0..batch * size * size)
        .map(|i| (i % 7) as f32 / 7.0)
        .collect();
    let images = Tensor::from_vec(&device, &[batch, 1, size, size], pixels)?;
    let labels = Labels::new(
        &device,
        &(0..batch as u32).map(|i| i % 10).collect::<Vec<_>>(),
        10,
    )?;
    let mut faults = Vec::new();
    for step in 0..3 {
        // A pause as evaluation or a checkpoint would make: an allocator that hands
        // freed memory back to the kernel after a delay has done so by now.
        std::thread::sleep(std::time::Duration::from_secs(2));
        let before = minor_faults();
        train_step(&net, &mut params, &mut adam, &images, &labels, step)?;
        faults.push(minor_faults() - before);
    }
    eprintln!("minor page faults per step: {faults:?}");
    // Measured: 5 and 18 faults for the second and third step; about 12,000 each
    // when the allocator hands freed memory back (`cpu::keep_freed_memory` off).
    assert!(
        faults[1] < 200 && faults[2] < 200,
        "faults per step {faults:?}"
    );
    Ok(())
}
