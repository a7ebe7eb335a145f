//! Elementwise functions written so that the compiler vectorises them (no branches), and the
//! dispatch to AVX-512 or AVX2 when the CPU has them. Their polynomials use `mul_add`: one fused
//! instruction under that dispatch (and on aarch64); on an x86-64 CPU without FMA, a call to the C
//! library's `fmaf`, slower and with the same results.

/// `exp(x)` for `x ≤ 0` (below about -87 it gives 0), relative error below 3e-7 (2.5 ulp):
/// `x = n·ln2 + f` with `|f| ≤ ln2/2`, a degree-6 polynomial for `exp(f)`, and `2ⁿ` built in the
/// exponent bits.
#[inline(always)]
pub fn exp_le0(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2²³ rounds to the nearest integer n and leaves n in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let below = x < -87.0;
    let x = if below { -87.0 } else { x };
    let biased = x.mul_add(LOG2E, ROUND);
    let n = biased - ROUND;
    let n_int = biased.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let f = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let p = (1.0f32 / 720.0).mul_add(f, 1.0 / 120.0);
    let p = p.mul_add(f, 1.0 / 24.0);
    let p = p.mul_add(f, 1.0 / 6.0);
    let p = p.mul_add(f, 0.5);
    let p = p.mul_add(f, 1.0);
    let p = p.mul_add(f, 1.0);
    let scale = f32::from_bits((n_int.wrapping_add(127) as u32) << 23);
    if below { 0.0 } else { p * scale }
}

/// `1 / (1 + exp(-x))`, through `exp(-|x|)` so that nothing overflows.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    let e = exp_le0(-x.abs());
    if x >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

/// `x · sigmoid(x)`.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x * sigmoid(x)
}

/// OpenAI CLIP's `x · sigmoid(1.702 x)` (transformers' `quick_gelu`).
#[inline(always)]
pub fn quick_gelu(x: f32) -> f32 {
    x * sigmoid(1.702 * x)
}

/// The exact (erf-based) GELU, `x/2 · (1 + erf(x/√2))`, with erf from Abramowitz and Stegun
/// 7.1.26 (absolute error below 1.5e-7).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let a = z.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    // erfc(|z|); 1 + erf(z) without cancellation for negative z.
    let tail = poly * exp_le0(-a * a);
    let one_plus_erf = if z < 0.0 { tail } else { 2.0 - tail };
    0.5 * x * one_plus_erf
}

/// `vectorised!(expr)`: [`dispatch`] of a closure evaluating `expr`, marked `#[inline(always)]`
/// as it must be: only inlined into the dispatched functions is its code compiled for their
/// instruction sets (otherwise it is one function for the baseline, with library calls for
/// `mul_add`).
macro_rules! vectorised {
    ($body:expr $(,)?) => {
        $crate::host::math::dispatch(
            #[inline(always)]
            || $body,
        )
    };
}
pub(crate) use vectorised;

/// Runs `body` compiled for AVX-512 (16 lanes) or else AVX2 and FMA (8 lanes) when the CPU has
/// them, else for the baseline; call it through [`vectorised!`].
#[inline(always)]
pub fn dispatch<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512<R>(body: impl FnOnce() -> R) -> R {
            body()
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(body: impl FnOnce() -> R) -> R {
            body()
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { avx512(body) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { avx2(body) };
        }
    }
    body()
}

/// Elements per parallel task of [`map`].
const MAP_CHUNK: usize = 16 * 1024;

/// `f` of every element, in parallel and vectorised (`f` inlined into the dispatched loop).
pub fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync + Copy) -> Vec<f32> {
    // SAFETY: each part is zipped with the input's part of the same length, and written in full.
    unsafe {
        super::par_fresh(x.len(), MAP_CHUNK, |i, out| {
            let x = &x[i * MAP_CHUNK..][..out.len()];
            vectorised!({
                for (o, v) in out.iter_mut().zip(x) {
                    o.write(f(*v));
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exponential_is_within_3e_7_relative() {
        let mut worst = 0f64;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let want = (x as f64).exp();
            let got = exp_le0(x) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
        assert_eq!(exp_le0(-100.0), 0.0);
        assert_eq!(exp_le0(0.0), 1.0);
    }

    #[test]
    fn gelu_is_within_3e_7_of_the_scale_of_its_input() {
        // Relative to max(1, |x|): about one f32 rounding of the input.
        let mut worst = 0f64;
        for i in -100_000..=100_000 {
            let x = i as f64 * 1e-4;
            let want =
                0.5 * x * (1.0 + crate::host::linear::tests::erf(x / std::f64::consts::SQRT_2));
            worst = worst.max((gelu(x as f32) as f64 - want).abs() / x.abs().max(1.0));
        }
        assert!(worst < 3e-7, "worst scaled error {worst:e}");
    }

    #[test]
    fn silu_is_within_4e_7_relative_and_finite_at_the_extremes() {
        let mut worst = 0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 5e-4;
            let want = x as f64 / (1.0 + (-(x as f64)).exp());
            let got = silu(x) as f64;
            // Below about -87 the result underflows to 0, a tiny absolute error.
            if want.abs() > 1e-30 {
                worst = worst.max(((got - want) / want).abs());
            } else {
                assert!((got - want).abs() <= 1e-30, "{x}: {got} vs {want}");
            }
        }
        assert!(worst < 4e-7, "worst relative error {worst:e}");
        assert_eq!(silu(1e30), 1e30);
        assert_eq!(silu(-1e30), 0.0);
        assert_eq!(silu(0.0), 0.0);
    }

    #[test]
    fn quick_gelu_is_within_4e_7_relative_in_parallel_chunks() {
        let x: Vec<f32> = (-100_000..=100_000).map(|i| i as f32 * 4e-4).collect();
        let got = map(&x, quick_gelu);
        let mut worst = 0f64;
        for (x, got) in x.iter().zip(got) {
            // transformers scales the input in f32 (`1.702 * input`) before its sigmoid; the
            // reference takes that product as it is and the rest in f64.
            let scaled = (1.702 * *x) as f64;
            let want = *x as f64 / (1.0 + (-scaled).exp());
            if want.abs() > 1e-30 {
                worst = worst.max(((got as f64 - want) / want).abs());
            }
        }
        assert!(worst < 4e-7, "worst relative error {worst:e}");
    }
}
