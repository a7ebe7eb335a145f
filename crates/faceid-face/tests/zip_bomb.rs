//! Zip archives of images that are small to send and large to decode, with the memory they cost
//! measured: four 10000x10000 images (refused from their headers), and four 6000x4000 images
//! within the limits, which the streaming reader holds one at a time. In its own test binary
//! (one process, one test) so that the peak resident memory measured is this test's alone.

use std::io::{Cursor, Write};

use faceid_core::testing::peak_rss_mib;
use faceid_detect::testing::one_bit_png;
use faceid_face::{FaceError, ImageLimit, ImageLimits, ZipLimits, for_each_zip_image, read_zip};

fn zip_of_copies(png: &[u8], count: usize) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for i in 0..count {
        writer.start_file(format!("{i}.png"), options).unwrap();
        writer.write_all(png).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

#[test]
fn zip_bombs_cost_one_image_at_most() {
    let huge = zip_of_copies(&one_bit_png(10_000, 10_000), 4);
    let large_png = one_bit_png(6000, 4000);
    let large = zip_of_copies(&large_png, 4);
    drop(large_png);
    eprintln!(
        "four 10000x10000 PNGs: {} KiB zipped; four 6000x4000: {} KiB",
        huge.len() >> 10,
        large.len() >> 10
    );
    assert!(huge.len() < 100 << 10, "{} bytes", huge.len());

    let before = peak_rss_mib().expect("VmHWM of /proc/self/status");
    let err = read_zip(
        "bomb.zip",
        &huge,
        &ZipLimits::default(),
        &ImageLimits::default(),
    )
    .unwrap_err();
    match err {
        FaceError::ImageTooLarge {
            image,
            width,
            height,
            limit,
        } => {
            assert_eq!(image, "bomb.zip:0.png");
            assert_eq!((width, height), (10_000, 10_000));
            assert_eq!(limit, ImageLimit::Width { max: 8192 });
        }
        other => panic!("{other:?}"),
    }
    let grown = peak_rss_mib().expect("VmHWM of /proc/self/status") - before;
    eprintln!("four 10000x10000 zipped: refused, peak RSS grew {grown:.1} MiB");
    assert!(grown < 16.0, "peak RSS grew {grown:.1} MiB");

    // Each 6000x4000 image needs 23 MiB of grey and 69 MiB of RGB to decode; streamed, one at
    // a time, the four never cost more than one (all four held would be 275 MiB of RGB).
    let one_image = (4 * 6000 * 4000) as f64 / f64::from(1 << 20);
    let before = peak_rss_mib().expect("VmHWM of /proc/self/status");
    let mut sizes = Vec::new();
    let count = for_each_zip_image(
        "large.zip",
        &large,
        &ZipLimits::default(),
        &ImageLimits::default(),
        |image| {
            sizes.push((image.name().to_string(), image.width(), image.height()));
            Ok(())
        },
    )
    .unwrap();
    let grown = peak_rss_mib().expect("VmHWM of /proc/self/status") - before;
    eprintln!(
        "four 6000x4000 zipped, streamed: peak RSS grew {grown:.1} MiB (one image: {one_image:.0} MiB)"
    );
    assert_eq!(count, 4);
    assert_eq!(sizes[3], ("large.zip:3.png".to_string(), 6000, 4000));
    assert!(grown < one_image + 24.0, "peak RSS grew {grown:.1} MiB");
}
