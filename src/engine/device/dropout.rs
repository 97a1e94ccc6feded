//! The dropout mask, drawn the same way by every device.

/// A dropout seed as the two words `Backend::dropout` reads: low, high.
pub fn seed_words(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

/// The dropout mask, shared by every device so their masks agree bit for bit: a
/// counter-based hash (SplitMix64's finaliser) of the seed and the element index,
/// whose top 24 bits are a uniform draw `u` in [0, 1); the element is kept when `u >= p`.
/// Keyed by (seed, index) rather than a stream, so backward recomputes the mask
/// instead of storing it, and any device or thread order draws the same one.
pub fn dropout_keeps(seed: u64, index: u64, p: f32) -> bool {
    let mut z = seed ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let u = (z >> 40) as f32 * (1.0 / (1u64 << 24) as f32);
    u >= p
}
