//! The CPU device's results do not depend on the number of rayon threads: every sum
//! runs in one fixed order however the work is split (the GEMMs split their outputs,
//! the 1x1 backward filter its output channels, never a sum).

use googlenet::training::step::train_step;
use googlenet::{Adam, Device, GoogLeNet, GoogLeNetConfig, Init, Labels, Tensor};

/// Every parameter's bits after two training steps in a pool of `threads`.
fn parameters_after_steps(threads: usize) -> anyhow::Result<Vec<Vec<u32>>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    pool.install(|| {
        let device = Device::cpu();
        // 64x64: GoogLeNet's planes reach 16x16, so the per-image 1x1 paths and the
        // Winograd 3x3 (conv2.2) run too.
        let (batch, size) = (4, 64);
        let (net, mut params) =
            GoogLeNet::new(&device, GoogLeNetConfig::default(), Init::PyTorchDefault, 3)?;
        let mut adam = Adam::new(&params, 1e-3)?;
        let pixels = (0..batch * size * size)
            .map(|i| ((i * 37) % 101) as f32 / 101.0)
            .collect();
        let images = Tensor::from_vec(&device, &[batch, 1, size, size], pixels)?;
        let labels = Labels::new(&device, &[1, 4, 7, 9], 10)?;
        for step in 0..2 {
            train_step(&net, &mut params, &mut adam, &images, &labels, step)?;
        }
        params
            .iter()
            .map(|p| Ok(p.value.to_vec()?.iter().map(|v| v.to_bits()).collect()))
            .collect()
    })
}

#[test]
fn one_two_and_three_threads_train_to_the_same_bits() -> anyhow::Result<()> {
    let one = parameters_after_steps(1)?;
    for threads in [2, 3] {
        assert!(
            parameters_after_steps(threads)? == one,
            "{threads} threads differ from one"
        );
    }
    Ok(())
}
