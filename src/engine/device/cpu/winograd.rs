//! 3x3 convolutions (stride 1, padding 1) on the CPU by Winograd's F(2x2, 3x3): 2.25
//! times fewer multiplications than the im2col GEMM, and the 3x3 convolutions are about
//! two thirds of GoogLeNet's arithmetic.
//!
//! The output is cut into 2x2 tiles `p = (n, ty, tx)`, `P` of them; tile p reads the 4x4
//! input patch `d_p` at rows `2ty - 1 ..`, columns `2tx - 1 ..` (zero outside the image).
//! For each filter `g[k, c]` (3x3):
//!   forward        `Y_p[k] = Aᵀ [ Σ_c U[k, c] ⊙ V_p[c] ] A`,
//!                  `U[k, c] = G g[k, c] Gᵀ`, `V_p[c] = Bᵀ d_p[c] B`  (4x4 each)
//!   backward data  `dd_p[c] = B [ Σ_k U[k, c] ⊙ dM_p[k] ] Bᵀ`, `dM_p[k] = A dY_p[k] Aᵀ`,
//!                  the 4x4 patches summed back onto `dx` (they overlap by 2)
//! (backward data is the forward's adjoint: `Y = Aᵀ (U ⊙ V) A` is linear in V). Each of
//! the 16 positions ξ of the 4x4 transforms is one GEMM over the channels:
//! `M[ξ] = U[ξ] · V[ξ]` (K x C by C x P), `dV[ξ] = U[ξ]ᵀ · dM[ξ]`. The 16 GEMMs run in
//! parallel, each on one thread, so each sum keeps one order whatever the thread count.
//! The filter gradient stays an im2col GEMM (see conv.rs): it is where the transforms'
//! few extra bits of rounding would show.
//!
//!   Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
//!   G  = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1]
//!   Aᵀ = [1 1 1 0; 0 1 -1 -1]
//!
//! Outputs (and gradients) are in the im2col path's layout, `[k, (n, oy, ox)]`, so the
//! caller's epilogues and gathers serve both.

use std::ops::{Add, Mul, Neg, Sub};

use multiversion::multiversion;
use rayon::prelude::*;

use super::fresh::{filled, filled_with};
use super::gemm::{product, Mat};
use super::strided::PhaseColumns;
use crate::engine::device::geometry::ConvGeometry;

/// Positions of a 4x4 transform: one GEMM each.
const XI: usize = 16;

/// The smallest plane (`h * w`) worth the transforms: 14x14. On 7x7 planes (GoogLeNet's
/// fifth stage at 224x224) the tiles, junk included, are twice the outputs, and
/// measured slower than the im2col GEMM.
const PLANE_MIN: usize = 196;

/// Whether `g` runs here rather than as im2col and a GEMM.
pub fn applies(g: &ConvGeometry) -> bool {
    g.k == 3 && g.stride == 1 && g.pad == 1 && g.h * g.w >= PLANE_MIN
}

/// Tiles the transforms take at once.
const LANES: usize = 8;

/// One value each of `LANES` tiles; arithmetic is lane by lane, which the compiler
/// vectorises.
#[derive(Clone, Copy)]
struct Lanes([f32; LANES]);

impl Lanes {
    fn zip(self, other: Lanes, f: impl Fn(f32, f32) -> f32) -> Lanes {
        Lanes(std::array::from_fn(|l| f(self.0[l], other.0[l])))
    }
}
impl Add for Lanes {
    type Output = Lanes;
    fn add(self, other: Lanes) -> Lanes {
        self.zip(other, |a, b| a + b)
    }
}
impl Sub for Lanes {
    type Output = Lanes;
    fn sub(self, other: Lanes) -> Lanes {
        self.zip(other, |a, b| a - b)
    }
}
impl Neg for Lanes {
    type Output = Lanes;
    fn neg(self) -> Lanes {
        Lanes(self.0.map(|a| -a))
    }
}
impl Mul<f32> for Lanes {
    type Output = Lanes;
    fn mul(self, k: f32) -> Lanes {
        Lanes(self.0.map(|a| a * k))
    }
}

/// What the transforms compute on: an f32 (the filters) or `Lanes` (the tiles).
trait Value:
    Copy + Add<Output = Self> + Sub<Output = Self> + Neg<Output = Self> + Mul<f32, Output = Self>
{
}
impl Value for f32 {}
impl Value for Lanes {}

// The 1-d transforms: `mul_f(v) = F · v` for each matrix F above (and the transposes
// the backward data pass needs).
fn mul_bt<T: Value>(v: [T; 4]) -> [T; 4] {
    [v[0] - v[2], v[1] + v[2], v[2] - v[1], v[1] - v[3]]
}
fn mul_b<T: Value>(v: [T; 4]) -> [T; 4] {
    [v[0], v[1] - v[2] + v[3], v[1] + v[2] - v[0], -v[3]]
}
fn mul_g<T: Value>(v: [T; 3]) -> [T; 4] {
    let half = (v[0] + v[2]) * 0.5;
    [v[0], half + v[1] * 0.5, half - v[1] * 0.5, v[2]]
}
fn mul_at<T: Value>(v: [T; 4]) -> [T; 2] {
    [v[0] + v[1] + v[2], v[1] - v[2] - v[3]]
}
fn mul_a<T: Value>(v: [T; 2]) -> [T; 4] {
    [v[0], v[0] + v[1], v[0] - v[1], -v[1]]
}

/// `F X Fᵀ` for the matrix F that `f` applies: `f` down each column, then along each row.
fn both<T: Value, const I: usize, const O: usize>(
    x: [[T; I]; I],
    f: impl Fn([T; I]) -> [T; O],
) -> [[T; O]; O] {
    // cols[j][i] = (F X)[i][j]
    let cols: [[T; O]; I] = std::array::from_fn(|j| f(std::array::from_fn(|i| x[i][j])));
    std::array::from_fn(|i| f(std::array::from_fn(|j| cols[j][i])))
}

/// `F X_o Fᵀ` for every tile `o`: element (i, j) of the input tiles is `ins[I·i + j][o]`,
/// of the outputs `outs[O·i + j][o]`; every slice is as long, a multiple of `LANES`.
fn transform<const I: usize, const O: usize, const NI: usize, const NO: usize>(
    ins: [&[f32]; NI],
    outs: [&mut [f32]; NO],
    f: impl Fn([Lanes; I]) -> [Lanes; O],
) {
    let len = outs[0].len();
    for at in (0..len).step_by(LANES) {
        let load = |k: usize| Lanes(ins[k][at..at + LANES].try_into().expect("LANES long"));
        let x = std::array::from_fn(|i| std::array::from_fn(|j| load(I * i + j)));
        for (k, y) in both(x, &f).iter().flatten().enumerate() {
            outs[k][at..at + LANES].copy_from_slice(&y.0);
        }
    }
}

/// The tiling of a convolution's output: `⌈oh/2⌉ x ⌈ow/2⌉` tiles per image, on a "wide
/// grid" of rows `row` tiles long, with junk tiles at the end of each row and of the
/// image (their input patches run past the plane; their outputs are dropped and their
/// output gradients are zero). They make tile `(ty, tx)`, at `o = ty·row + tx`, read
/// each element of its patch at a fixed offset from `o` (see `phases`), so that every
/// transform is one long vectorised loop over an image, `per_image` tiles.
#[derive(Clone, Copy)]
struct Tiles {
    row: usize,
    /// Tiles per image, junk included: `y · row`, up to a multiple of `LANES`.
    per_image: usize,
    /// All tiles, `n · per_image`: the GEMMs' P.
    count: usize,
    /// The length of a phase plane (see `phases`): what the tiles read past theirs.
    phase_len: usize,
}

impl Tiles {
    fn new(g: &ConvGeometry) -> Self {
        let (y, row) = (g.oh.div_ceil(2), g.ow.div_ceil(2) + 1);
        let per_image = (y * row).next_multiple_of(LANES);
        Tiles {
            row,
            per_image,
            count: g.n * per_image,
            phase_len: per_image + row + 1,
        }
    }
}

/// The four phase planes of `plane` (`h x w`) shifted by `shift`, each `phase_len` long
/// with rows `cols` apart: `out[ry·2 + rx][a·cols + b] = plane[2a + ry - shift,
/// 2b + rx - shift]`, zero outside. So element `(2a + i, 2b + j)` of the shifted plane
/// is at `(a + i/2)·cols + b + j/2` of phase `(i % 2)·2 + j % 2`. Compiled for AVX-512
/// and AVX2 too, picked at run time by what the CPU has.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn phases(plane: &[f32], h: usize, w: usize, shift: usize, cols: usize, out: &mut [f32]) {
    let phase_len = out.len() / 4;
    for (ph, out) in out.chunks_mut(phase_len).enumerate() {
        let (ry, rx) = (ph / 2, ph % 2);
        let columns = PhaseColumns::new(w, 2, rx, shift);
        for (a, out_row) in out.chunks_mut(cols).enumerate() {
            let iy = (2 * a + ry).wrapping_sub(shift);
            let src = (iy < h).then(|| &plane[iy * w..][..w]);
            columns.write(out_row, src, 0.0);
        }
    }
}

/// Where, in `phases` of the padded input, element (i, j) of tile 0's patch lies.
fn patch_at(i: usize, j: usize, tiles: &Tiles) -> usize {
    ((i % 2) * 2 + j % 2) * tiles.phase_len + (i / 2) * tiles.row + j / 2
}

/// `U[ξ][k, c]` from the filters `w [k, c, 3, 3]`: K x C per ξ.
fn filter_transform(w: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let len = g.c_out * g.c_in;
    let per_filter: Vec<[f32; XI]> = w
        .par_chunks_exact(9)
        .map(|f| {
            let t = both(
                std::array::from_fn(|i| [f[3 * i], f[3 * i + 1], f[3 * i + 2]]),
                mul_g,
            );
            std::array::from_fn(|xi| t[xi / 4][xi % 4])
        })
        .collect();
    filled(XI * len, len, |xi, u| {
        for (u, t) in u.iter_mut().zip(&per_filter) {
            *u = t[xi];
        }
    })
}

/// `U[ξ]` of `filter_transform`'s output, as the K x C matrix it is.
fn filter_block<'a>(u: &'a [f32], xi: usize, g: &ConvGeometry) -> Mat<'a> {
    let len = g.c_out * g.c_in;
    Mat::new(&u[xi * len..][..len], g.c_out, g.c_in)
}

/// The first `N` pieces `stride` apart of `data`, each `len` long.
fn pieces<const N: usize>(data: &mut [f32], stride: usize, len: usize) -> [&mut [f32]; N] {
    let mut chunks = data.chunks_mut(stride);
    std::array::from_fn(|_| &mut chunks.next().expect("N pieces")[..len])
}

/// `V` from the input `x [n, c_in, h, w]`, laid out `[c][ξ][p]` so that each channel is
/// one task's (`block` reads it per ξ).
fn input_transform(x: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let tiles = Tiles::new(g);
    let (p_n, wide, plane) = (tiles.count, tiles.per_image, g.h * g.w);
    filled_with(
        g.c_in * XI * p_n,
        XI * p_n,
        || vec![0.0; 4 * tiles.phase_len],
        |ph, (c, v_c)| {
            for n in 0..g.n {
                phases(
                    &x[(n * g.c_in + c) * plane..][..plane],
                    g.h,
                    g.w,
                    1,
                    tiles.row,
                    ph,
                );
                let ins: [&[f32]; XI] = std::array::from_fn(|k| {
                    let at = patch_at(k / 4, k % 4, &tiles);
                    &ph[at..at + wide]
                });
                let outs = pieces::<XI>(&mut v_c[n * wide..], p_n, wide);
                transform(ins, outs, mul_bt);
            }
        },
    )
}

/// `dM` from the output gradient `d_out [k, (n, oy, ox)]`, laid out `[k][ξ][p]`.
fn output_grad_transform(d_out: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let tiles = Tiles::new(g);
    let (p_n, wide, positions) = (tiles.count, tiles.per_image, g.oh * g.ow);
    filled_with(
        g.c_out * XI * p_n,
        XI * p_n,
        || vec![0.0; 4 * tiles.phase_len],
        |ph, (k, dm_k)| {
            let row = &d_out[k * g.n * positions..][..g.n * positions];
            for n in 0..g.n {
                let plane = &row[n * positions..][..positions];
                phases(plane, g.oh, g.ow, 0, tiles.row, ph);
                // Output (i, j) of tile o is at o of phase i·2 + j.
                let ins: [&[f32]; 4] = std::array::from_fn(|k| &ph[k * tiles.phase_len..][..wide]);
                let outs = pieces::<XI>(&mut dm_k[n * wide..], p_n, wide);
                transform(ins, outs, mul_a);
            }
        },
    )
}

/// Block ξ of a `[rows][ξ][p]` buffer (`input_transform`, `output_grad_transform`): a
/// `rows x p_n` matrix.
fn block(data: &[f32], xi: usize, rows: usize, p_n: usize) -> Mat<'_> {
    Mat {
        row_stride: XI * p_n,
        ..Mat::new(&data[xi * p_n..], rows, p_n)
    }
}

/// The 16 products `lhs(ξ) · rhs(ξ)`, one GEMM per thread at a time.
fn products<'a>(
    lhs: impl Fn(usize) -> Mat<'a> + Sync,
    rhs: impl Fn(usize) -> Mat<'a> + Sync,
) -> Vec<Vec<f32>> {
    (0..XI)
        .into_par_iter()
        .map(|xi| product(lhs(xi), rhs(xi)))
        .collect()
}

/// The 16 pieces of the `[rows][p]` products for row `r`, image `n`.
fn product_row<'a>(data: &'a [Vec<f32>], r: usize, n: usize, tiles: &Tiles) -> [&'a [f32]; XI] {
    let from = r * tiles.count + n * tiles.per_image;
    std::array::from_fn(|xi| &data[xi][from..][..tiles.per_image])
}

/// The forward: `[c_out, (n, oy, ox)]`, bias and activation left to the caller. `w` is
/// `[c_out, c_in, 3, 3]`.
pub fn forward(x: &[f32], w: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let (k_n, c_n) = (g.c_out, g.c_in);
    let tiles = Tiles::new(g);
    let (p_n, wide) = (tiles.count, tiles.per_image);
    let u = filter_transform(w, g);
    let v = input_transform(x, g);
    let m = products(|xi| filter_block(&u, xi, g), |xi| block(&v, xi, c_n, p_n));
    let positions = g.oh * g.ow;
    filled_with(
        k_n * g.n * positions,
        g.n * positions,
        || vec![0.0; 4 * wide],
        |y, (k, row)| {
            for n in 0..g.n {
                // Output (i, j) of every tile of the image, at o of y's piece i·2 + j, ...
                transform(
                    product_row(&m, k, n, &tiles),
                    pieces::<4>(y, wide, wide),
                    mul_at,
                );
                // ... then in place.
                let plane = &mut row[n * positions..][..positions];
                for (oy, out_row) in plane.chunks_mut(g.ow).enumerate() {
                    let (piece, o) = ((oy % 2) * 2 * wide, (oy / 2) * tiles.row);
                    for (ox, v) in out_row.iter_mut().enumerate() {
                        *v = y[piece + (ox % 2) * wide + o + ox / 2];
                    }
                }
            }
        },
    )
}

/// The input gradient of the output gradient `d_out [c_out, (n, oy, ox)]`, added onto
/// `dx [n, c_in, h, w]`.
pub fn backward_data(d_out: &[f32], w: &[f32], g: &ConvGeometry, dx: &mut [f32]) {
    let (k_n, c_n) = (g.c_out, g.c_in);
    let tiles = Tiles::new(g);
    let (p_n, wide) = (tiles.count, tiles.per_image);
    let u = filter_transform(w, g);
    let dm = output_grad_transform(d_out, g);
    let dv = products(
        |xi| filter_block(&u, xi, g).t(),
        |xi| block(&dm, xi, k_n, p_n),
    );
    let plane = g.h * g.w;
    // One (image, channel) plane per task. Its patches are summed into the phases of
    // the padded plane (see `phases`), patch element by patch element in a fixed order,
    // then added onto dx.
    dx.par_chunks_mut(plane).enumerate().for_each_init(
        || (vec![0.0; XI * wide], vec![0.0; 4 * tiles.phase_len]),
        |(dd, ph), (nc, dx_p)| {
            let (n, c) = (nc / c_n, nc % c_n);
            transform(
                product_row(&dv, c, n, &tiles),
                pieces::<XI>(dd, wide, wide),
                mul_b,
            );
            ph.fill(0.0);
            for (k, dd) in dd.chunks(wide).enumerate() {
                let at = patch_at(k / 4, k % 4, &tiles);
                for (acc, &v) in ph[at..at + wide].iter_mut().zip(dd) {
                    *acc += v;
                }
            }
            for (iy, dx_row) in dx_p.chunks_mut(g.w).enumerate() {
                let r = iy + 1;
                let row = (r % 2) * 2 * tiles.phase_len + (r / 2) * tiles.row;
                for (ix, d) in dx_row.iter_mut().enumerate() {
                    let q = ix + 1;
                    *d += ph[row + (q % 2) * tiles.phase_len + q / 2];
                }
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The direct 3x3 convolution in f64 at `(n, k, oy, ox)`, and the sum of its terms'
    /// magnitudes (the scale its rounding error is held to).
    fn direct(
        x: &[f32],
        w: &[f32],
        g: &ConvGeometry,
        n: usize,
        k: usize,
        oy: usize,
        ox: usize,
    ) -> (f64, f64) {
        let (mut sum, mut scale) = (0.0, 0.0);
        for c in 0..g.c_in {
            for ky in 0..3 {
                for kx in 0..3 {
                    let (iy, ix) = ((oy + ky).wrapping_sub(1), (ox + kx).wrapping_sub(1));
                    if iy < g.h && ix < g.w {
                        let t = w[((k * g.c_in + c) * 3 + ky) * 3 + kx] as f64
                            * x[((n * g.c_in + c) * g.h + iy) * g.w + ix] as f64;
                        sum += t;
                        scale += t.abs();
                    }
                }
            }
        }
        (sum, scale)
    }

    fn random(len: usize, rng: &mut StdRng) -> Vec<f32> {
        (0..len).map(|_| rng.gen_range(-1.0..1.0)).collect()
    }

    /// Rounding error, relative to the sum of the terms' magnitudes, that each result
    /// must stay within: f32's unit roundoff (6e-8) times the few dozen roundings a
    /// transform, a GEMM over up to a few hundred channels and the inverse transform add.
    const TOLERANCE: f64 = 2e-6;

    // Odd and even sides (edge tiles half outside), batch 1 and 2, one channel.
    const SHAPES: [[usize; 5]; 4] = [
        // n, c_in, h, w, c_out
        [1, 1, 14, 14, 1],
        [2, 3, 15, 17, 5],
        [1, 17, 13, 16, 4],
        [2, 64, 14, 14, 48],
    ];

    #[test]
    fn forward_matches_the_direct_convolution() {
        let mut rng = StdRng::seed_from_u64(1);
        for [n, c_in, h, w, c_out] in SHAPES {
            let g = ConvGeometry::new([n, c_in, h, w], c_out, 3, 1, 1).unwrap();
            assert!(applies(&g));
            let (x, wt) = (
                random(n * c_in * h * w, &mut rng),
                random(c_out * c_in * 9, &mut rng),
            );
            let out = forward(&x, &wt, &g);
            let positions = h * w;
            for k in 0..c_out {
                for i in 0..n {
                    for oy in 0..h {
                        for ox in 0..w {
                            let (want, scale) = direct(&x, &wt, &g, i, k, oy, ox);
                            let got = out[k * n * positions + i * positions + oy * w + ox] as f64;
                            assert!(
                                (got - want).abs() <= TOLERANCE * scale,
                                "{:?} at ({i}, {k}, {oy}, {ox}): {got} vs {want} (scale {scale})",
                                [n, c_in, h, w, c_out]
                            );
                        }
                    }
                }
            }
        }
    }

    /// Backward data against the direct convolution's adjoint: `dx = ∂/∂x Σ dY · conv(x, w)`.
    #[test]
    fn backward_data_is_the_forward_adjoint() {
        let mut rng = StdRng::seed_from_u64(2);
        for [n, c_in, h, w, c_out] in SHAPES {
            let g = ConvGeometry::new([n, c_in, h, w], c_out, 3, 1, 1).unwrap();
            let positions = h * w;
            let (x, wt) = (
                random(n * c_in * h * w, &mut rng),
                random(c_out * c_in * 9, &mut rng),
            );
            let d_out = random(c_out * n * positions, &mut rng);
            let already = random(x.len(), &mut rng);
            let mut dx = already.clone();
            backward_data(&d_out, &wt, &g, &mut dx);

            let mut want_dx = vec![0.0f64; x.len()];
            let mut scale_dx = vec![0.0f64; x.len()];
            for k in 0..c_out {
                for i in 0..n {
                    for oy in 0..h {
                        for ox in 0..w {
                            let d = d_out[k * n * positions + i * positions + oy * w + ox] as f64;
                            for c in 0..c_in {
                                for ky in 0..3 {
                                    for kx in 0..3 {
                                        let (iy, ix) =
                                            ((oy + ky).wrapping_sub(1), (ox + kx).wrapping_sub(1));
                                        if iy < h && ix < w {
                                            let xi = ((i * c_in + c) * h + iy) * w + ix;
                                            let wi = ((k * c_in + c) * 3 + ky) * 3 + kx;
                                            want_dx[xi] += d * wt[wi] as f64;
                                            scale_dx[xi] += (d * wt[wi] as f64).abs();
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            for (e, &got) in dx.iter().enumerate() {
                let (want, scale) = (
                    want_dx[e] + already[e] as f64,
                    scale_dx[e] + already[e].abs() as f64,
                );
                assert!(
                    (got as f64 - want).abs() <= TOLERANCE * scale,
                    "dx[{e}]: {got} vs {want}"
                );
            }
        }
    }
}
