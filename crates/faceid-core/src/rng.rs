//! Torch-compatible Gaussian noise: a port of what `torch.randn(shape, generator=g)` does for a CPU
//! `torch.Generator("cpu").manual_seed(seed)` and `float32` (ATen's `CPUGeneratorImpl`,
//! `aten/src/ATen/core/DistributionsHelper.h`, `aten/src/ATen/native/cpu/DistributionTemplates.h`
//! and `avx_mathfun.h`). This is what diffusers' `randn_tensor` calls for the initial latents and
//! for the noise of stochastic schedulers whenever the generator lives on the CPU.
//!
//! The algorithm:
//! - 32-bit Mersenne Twister (MT19937) seeded with the low 32 bits of the seed;
//! - for 16 or more values (the vectorised path): every slot first gets a 24-bit uniform
//!   `(x & 0xFFFFFF) * 2^-24`, then each complete block of 16 goes through Box-Muller (8 pairs);
//!   when the count is not a multiple of 16, 16 fresh uniforms overwrite the *last* 16 slots
//!   (overlapping the previous block) and are transformed again. On x86-64 torch computes the
//!   transform with the Cephes-style AVX polynomials of `avx_mathfun.h`, compiled with fused
//!   multiply-adds; they are replicated here operation by operation, which gives bit-identical
//!   values (builds of torch without AVX2, e.g. on ARM, use libm instead and differ in the last bit);
//! - for fewer than 16 values: double-precision Box-Muller on 53-bit uniforms; the second value of
//!   each pair is cached in the generator and returned by the next scalar draw, exactly like torch.

use burn::tensor::{Device, Tensor, TensorData};

const MT_N: usize = 624;
const MT_M: usize = 397;

/// The 32-bit Mersenne Twister, as `at::mt19937` / `std::mt19937`.
#[derive(Clone)]
struct Mt19937 {
    state: [u32; MT_N],
    index: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Self {
        let mut state = [0u32; MT_N];
        state[0] = seed;
        for i in 1..MT_N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Self { state, index: MT_N }
    }

    fn twist(&mut self) {
        for i in 0..MT_N {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % MT_N] & 0x7fff_ffff);
            let mut next = self.state[(i + MT_M) % MT_N] ^ (y >> 1);
            if y & 1 != 0 {
                next ^= 0x9908_b0df;
            }
            self.state[i] = next;
        }
        self.index = 0;
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= MT_N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }
}

/// A random generator that reproduces `torch.Generator("cpu").manual_seed(seed)` followed by
/// `torch.randn(..., generator=g)` calls (float32), including how its state carries over from one
/// call to the next.
#[derive(Clone)]
pub struct TorchGenerator {
    seed: u64,
    mt: Mt19937,
    /// Second value of the last scalar Box-Muller pair (torch's `next_double_normal_sample`).
    cached_normal: Option<f64>,
}

impl std::fmt::Debug for TorchGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchGenerator")
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl TorchGenerator {
    /// A generator in the state of `torch.Generator("cpu").manual_seed(seed)`; like torch, only
    /// the low 32 bits of the seed reach the Mersenne Twister.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            mt: Mt19937::new(seed as u32),
            cached_normal: None,
        }
    }

    /// The seed this generator was created with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The next raw 32-bit output (torch's `random()`).
    pub fn next_u32(&mut self) -> u32 {
        self.mt.next_u32()
    }

    /// The next 64-bit output, two 32-bit draws with the first one high (torch's `random64()`).
    pub fn next_u64(&mut self) -> u64 {
        let hi = self.next_u32() as u64;
        let lo = self.next_u32() as u64;
        (hi << 32) | lo
    }

    /// A float uniform in `[0, 1)` with 24 random bits.
    fn uniform_f32(&mut self) -> f32 {
        (self.next_u32() & 0x00ff_ffff) as f32 * (1.0 / 16_777_216.0)
    }

    /// A double uniform in `[0, 1)` with 53 random bits.
    fn uniform_f64(&mut self) -> f64 {
        (self.next_u64() & ((1u64 << 53) - 1)) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// One standard normal value of `at::normal_distribution<double>`, using the cached second
    /// value of the previous pair when there is one.
    fn normal_f64(&mut self) -> f64 {
        if let Some(cached) = self.cached_normal.take() {
            return cached;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.cached_normal = Some(r * theta.sin());
        r * theta.cos()
    }

    /// `n` standard normal values, identical to `torch.randn(n, generator=g)` in float32.
    pub fn randn(&mut self, n: usize) -> Vec<f32> {
        if n < 16 {
            return (0..n).map(|_| self.normal_f64() as f32).collect();
        }
        let mut data: Vec<f32> = (0..n).map(|_| self.uniform_f32()).collect();
        for block in data.chunks_exact_mut(16) {
            box_muller_16(block);
        }
        if !n.is_multiple_of(16) {
            let tail = &mut data[n - 16..];
            for slot in tail.iter_mut() {
                *slot = self.uniform_f32();
            }
            box_muller_16(tail);
        }
        data
    }

    /// A tensor of standard normal values of the given shape (row-major), identical to
    /// `torch.randn(shape, generator=g)`, created on `device`.
    pub fn randn_tensor<const D: usize>(
        &mut self,
        shape: [usize; D],
        device: &Device,
    ) -> Tensor<D> {
        let n = shape.iter().product();
        let values = self.randn(n);
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

/// Box-Muller on one block of 16 uniforms: `d[j]`, `d[j + 8]` become `r cos θ`, `r sin θ` with
/// `r = sqrt(-2 ln(1 - d[j]))`, `θ = 2π d[j + 8]`, all in float32 like torch's AVX2 kernel.
fn box_muller_16(d: &mut [f32]) {
    let two_pi = (2.0 * std::f64::consts::PI) as f32;
    for j in 0..8 {
        let u1 = 1.0 - d[j];
        let u2 = d[j + 8];
        let radius = (-2.0 * cephes_logf(u1)).sqrt();
        let theta = two_pi * u2;
        let (sin, cos) = cephes_sincosf(theta);
        d[j] = radius * cos;
        d[j + 8] = radius * sin;
    }
}

/// Scalar transcription of `log256_ps` (Cephes `logf`) for inputs in `(0, 1]`, with the fused
/// multiply-adds the compiler forms in torch's build.
#[allow(clippy::excessive_precision)] // constants written as in the C source
fn cephes_logf(x: f32) -> f32 {
    // The constants of avx_mathfun.h, written as there (double literals rounded to float).
    const P: [f32; 9] = [
        7.0376836292E-2_f64 as f32,
        -1.1514610310E-1_f64 as f32,
        1.1676998740E-1_f64 as f32,
        -1.2420140846E-1_f64 as f32,
        1.4249322787E-1_f64 as f32,
        -1.6668057665E-1_f64 as f32,
        2.0000714765E-1_f64 as f32,
        -2.4999993993E-1_f64 as f32,
        3.3333331174E-1_f64 as f32,
    ];
    const Q1: f32 = -2.12194440e-4_f64 as f32;
    const Q2: f32 = 0.693359375;
    const SQRTHF: f32 = std::f64::consts::FRAC_1_SQRT_2 as f32;

    let x = x.max(f32::MIN_POSITIVE);
    let bits = x.to_bits();
    let exponent = (bits >> 23) as i32 - 0x7f;
    let mut x = f32::from_bits((bits & !0x7f80_0000) | 0.5f32.to_bits());
    let mut e = exponent as f32 + 1.0;
    if x < SQRTHF {
        e -= 1.0;
        x = (x - 1.0) + x;
    } else {
        x -= 1.0;
    }
    let z = x * x;
    let mut y = P[0];
    for &c in &P[1..] {
        y = y.mul_add(x, c);
    }
    y *= x;
    y = y.mul_add(z, e * Q1);
    y = (-z).mul_add(0.5, y);
    e.mul_add(Q2, x + y)
}

/// Scalar transcription of `sincos256_ps` (Cephes `sinf`/`cosf`), returning `(sin, cos)`.
#[allow(clippy::excessive_precision)] // constants written as in the C source
fn cephes_sincosf(x: f32) -> (f32, f32) {
    const FOPI: f32 = 1.27323954473516_f64 as f32; // 4 / pi
    const DP1: f32 = -0.78515625;
    const DP2: f32 = -2.4187564849853515625e-4_f64 as f32;
    const DP3: f32 = -3.77489497744594108e-8_f64 as f32;
    const SIN_P: [f32; 3] = [
        -1.9515295891E-4_f64 as f32,
        8.3321608736E-3_f64 as f32,
        -1.6666654611E-1_f64 as f32,
    ];
    const COS_P: [f32; 3] = [
        2.443315711809948E-005_f64 as f32,
        -1.388731625493765E-003_f64 as f32,
        4.166664568298827E-002_f64 as f32,
    ];

    let sign_sin = x.is_sign_negative();
    let mut x = x.abs();
    let mut j = (x * FOPI) as i32;
    j = (j + 1) & !1;
    let y = j as f32;
    let swap_sign_sin = j & 4 != 0;
    let use_cos_poly_for_sin = j & 2 == 0;
    let sign_cos = !(j - 2) & 4 != 0;

    x = y.mul_add(DP1, x);
    x = y.mul_add(DP2, x);
    x = y.mul_add(DP3, x);
    let z = x * x;

    let mut yc = COS_P[0].mul_add(z, COS_P[1]);
    yc = yc.mul_add(z, COS_P[2]);
    yc *= z;
    yc = yc.mul_add(z, -(z * 0.5));
    yc += 1.0;

    let mut ys = SIN_P[0].mul_add(z, SIN_P[1]);
    ys = ys.mul_add(z, SIN_P[2]);
    ys *= z;
    ys = ys.mul_add(x, x);

    let (sin, cos) = if use_cos_poly_for_sin {
        (ys, yc)
    } else {
        (yc, ys)
    };
    let sin = if sign_sin ^ swap_sign_sin { -sin } else { sin };
    let cos = if sign_cos { -cos } else { cos };
    (sin, cos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mersenne_twister_matches_reference_outputs() {
        // First outputs of std::mt19937 with the default seed 5489.
        let mut mt = Mt19937::new(5489);
        assert_eq!(mt.next_u32(), 3_499_211_612);
        assert_eq!(mt.next_u32(), 581_869_302);
        // The 10000th output of a default-constructed std::mt19937 (C++ standard requirement).
        let mut mt = Mt19937::new(5489);
        let last = (0..10_000).map(|_| mt.next_u32()).last();
        assert_eq!(last, Some(4_123_659_995));
    }

    #[test]
    fn seed_uses_low_32_bits() {
        let mut a = TorchGenerator::new(7);
        let mut b = TorchGenerator::new((1u64 << 32) + 7);
        assert_eq!(a.randn(20), b.randn(20));
    }

    #[test]
    fn cephes_functions_are_accurate() {
        for i in 1..1000 {
            let x = i as f32 / 1000.0;
            assert!((cephes_logf(x) - x.ln()).abs() <= 2e-7 * x.ln().abs().max(1.0));
            let t = x * 6.283_185;
            let (s, c) = cephes_sincosf(t);
            assert!((s - t.sin()).abs() < 2e-7 && (c - t.cos()).abs() < 2e-7);
        }
    }
}
