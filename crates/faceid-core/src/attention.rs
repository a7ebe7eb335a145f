//! Multi-head scaled dot-product attention over projections laid out as `to_q`/`to_k`/`to_v`
//! (diffusers) and `q_proj`/`k_proj`/`v_proj` (transformers) write them: `[batch, seq,
//! heads·dim]`, a head being a band of columns. The result is in the same layout, ready for the
//! output projection. f32 on the CPU backend runs on [`crate::host::attention`] without
//! splitting the heads out; everything else on burn's attention.

use burn::tensor::Tensor;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

/// `softmax(q kᵀ / √dim) v` per head for `q` `[batch, queries, heads·dim]`, `k`
/// `[batch, keys, heads·dim]` and `v` `[batch, keys, heads·value_dim]`, returning
/// `[batch, queries, heads·value_dim]`. `causal`: query `i` attends to keys `0..=i` (CLIP's text
/// encoder).
pub fn multi_head_attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
    causal: bool,
) -> Tensor<3> {
    #[cfg(feature = "flex")]
    if let Some(out) = on_host(&q, &k, &v, heads, causal) {
        return out;
    }
    let [b, s, _] = q.dims();
    let value_inner = v.dims()[2];
    let split = |t: Tensor<3>| {
        let [b, n, inner] = t.dims();
        t.reshape([b, n, heads, inner / heads]).swap_dims(1, 2)
    };
    let options = AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: causal,
    };
    attention(split(q), split(k), split(v), None, None, options)
        .swap_dims(1, 2)
        .reshape([b, s, value_inner])
}

/// The f32 CPU path; `None` for other backends and dtypes.
#[cfg(feature = "flex")]
fn on_host(
    q: &Tensor<3>,
    k: &Tensor<3>,
    v: &Tensor<3>,
    heads: usize,
    causal: bool,
) -> Option<Tensor<3>> {
    use crate::host::{self, HostF32, attention::Shape};
    let (hq, hk, hv) = (HostF32::of(q)?, HostF32::of(k)?, HostF32::of(v)?);
    let [batch, queries, inner] = q.dims();
    let [_, keys, value_inner] = v.dims();
    let shape = Shape {
        batch,
        heads,
        queries,
        keys,
        dim: inner / heads,
        value_dim: value_inner / heads,
        causal,
    };
    let scale = 1.0 / ((inner / heads) as f32).sqrt();
    let out = host::attention::attention(hq.data(), hk.data(), hv.data(), shape, scale);
    Some(host::tensor(out, [batch, queries, value_inner]))
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::*;

    #[test]
    fn the_host_kernel_agrees_with_burns_attention() {
        let device = Device::flex();
        let heads = 3;
        let make = |seq: usize, dim: usize| {
            Tensor::<3>::random(
                [2, seq, heads * dim],
                Distribution::Normal(0.0, 1.0),
                &device,
            )
        };
        let split = |t: Tensor<3>| {
            let [b, n, inner] = t.dims();
            t.reshape([b, n, heads, inner / heads]).swap_dims(1, 2)
        };
        for (keys, causal) in [(1100, false), (77, false), (4, false), (130, true)] {
            let (q, k, v) = (make(130, 40), make(keys, 40), make(keys, 24));
            let ours = on_host(&q, &k, &v, heads, causal).expect("f32 on flex");
            let options = AttentionModuleOptions {
                scale: None,
                softcap: None,
                is_causal: causal,
            };
            let reference = attention(split(q), split(k), split(v), None, None, options)
                .swap_dims(1, 2)
                .reshape([2, 130, heads * 24]);
            let diff: f32 = (ours - reference).abs().max().into_scalar();
            assert!(
                diff < 1e-5,
                "{keys} keys, causal {causal}: max abs difference {diff}"
            );
        }
    }
}
