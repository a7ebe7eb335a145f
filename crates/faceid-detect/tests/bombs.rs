//! Decompression bombs against the limits, with the memory they cost measured: a PNG of a few
//! tens of kilobytes that declares 20000x20000 pixels, and one within the size limits whose
//! decoding needs more than the allocation budget. In its own test binary (one process, one
//! test) so that the peak resident memory measured is this test's alone.

use faceid_core::testing::peak_rss_mib;
use faceid_detect::testing::one_bit_png;
use faceid_detect::{FaceImage, ImageError, ImageLimit, ImageLimits};

#[test]
fn bombs_are_refused_before_they_cost_memory() {
    let bomb = one_bit_png(20_000, 20_000);
    let large = one_bit_png(8192, 6144);
    eprintln!(
        "20000x20000 1-bit PNG: {} KiB; 8192x6144: {} KiB",
        bomb.len() >> 10,
        large.len() >> 10
    );
    assert!(bomb.len() < 100 << 10, "{} bytes", bomb.len());

    let before = peak_rss_mib().expect("VmHWM of /proc/self/status");
    match FaceImage::from_bytes("bomb.png", &bomb, &ImageLimits::default()) {
        Err(ImageError::TooLarge {
            image,
            width,
            height,
            limit,
        }) => {
            assert_eq!(image, "bomb.png");
            assert_eq!((width, height), (20_000, 20_000));
            assert_eq!(limit, ImageLimit::Width { max: 8192 });
        }
        other => panic!("{other:?}"),
    }
    let grown = peak_rss_mib().expect("VmHWM of /proc/self/status") - before;
    eprintln!("20000x20000 bomb: refused, peak RSS grew {grown:.1} MiB");
    assert!(grown < 16.0, "peak RSS grew {grown:.1} MiB");

    // Within the size limits, over a 64 MiB allocation budget: 48 MiB of grey plus 144 MiB of
    // RGB would be needed, and nothing is decoded.
    let tight = ImageLimits {
        max_alloc: 64 << 20,
        ..ImageLimits::default()
    };
    let before = peak_rss_mib().expect("VmHWM of /proc/self/status");
    match FaceImage::from_bytes("large.png", &large, &tight) {
        Err(ImageError::TooLarge {
            image,
            limit: ImageLimit::Memory { needed, max },
            ..
        }) => {
            assert_eq!(image, "large.png");
            assert_eq!((needed, max), (4 * 8192 * 6144, 64 << 20));
        }
        other => panic!("{other:?}"),
    }
    let grown = peak_rss_mib().expect("VmHWM of /proc/self/status") - before;
    eprintln!("8192x6144 over a 64 MiB budget: refused, peak RSS grew {grown:.1} MiB");
    assert!(grown < 16.0, "peak RSS grew {grown:.1} MiB");

    // The largest image the defaults admit decodes, within what was reserved for it.
    let before = peak_rss_mib().expect("VmHWM of /proc/self/status");
    let image = FaceImage::from_bytes("large.png", &large, &ImageLimits::default()).unwrap();
    assert_eq!((image.width(), image.height()), (8192, 6144));
    assert_eq!(image.rgb().get_pixel(8191, 6143).0, [0, 0, 0]);
    let grown = peak_rss_mib().expect("VmHWM of /proc/self/status") - before;
    let reserved = (4 * 8192 * 6144) as f64 / f64::from(1 << 20);
    eprintln!("8192x6144 decoded: peak RSS grew {grown:.1} MiB ({reserved:.0} MiB reserved)");
    assert!(grown < reserved + 32.0, "peak RSS grew {grown:.1} MiB");
}
