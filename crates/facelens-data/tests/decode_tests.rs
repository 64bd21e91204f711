//! Decoding: every supported pixel layout becomes 8-bit RGB; bad files give errors naming the file.

use std::io::Cursor;
use std::path::Path;

use facelens_data::{decode_bytes, decode_image, DataError};
use image::codecs::jpeg::JpegEncoder;
use image::{
    DynamicImage, GrayImage, ImageBuffer, ImageEncoder, ImageFormat, Luma, LumaA, Rgb, RgbImage,
    Rgba, RgbaImage,
};

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), format)
        .expect("encode");
    out
}

#[test]
fn corrupt_bytes_name_the_file() {
    let path = Path::new("faces/broken.jpg");
    let err = decode_bytes(b"\xFF\xD8\xFF\xE0 definitely not a jpeg", path).unwrap_err();
    assert!(matches!(err, DataError::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("faces/broken.jpg"), "{err}");
}

#[test]
fn truncated_png_is_a_decode_error() {
    let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(32, 32, Rgb([10, 20, 30])));
    let png = encode(&img, ImageFormat::Png);
    let err = decode_bytes(&png[..png.len() / 2], Path::new("half.png")).unwrap_err();
    assert!(matches!(err, DataError::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("half.png"));
}

#[test]
fn unknown_format_is_a_decode_error() {
    let err = decode_bytes(b"hello world, no image here", Path::new("notes.txt")).unwrap_err();
    assert!(
        err.to_string().contains("unrecognised image format"),
        "{err}"
    );
}

#[test]
fn empty_file_is_a_decode_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("empty.jpg");
    std::fs::write(&path, b"").expect("write");
    let err = decode_image(&path).unwrap_err();
    assert!(
        err.to_string().contains("empty.jpg") && err.to_string().contains("empty"),
        "{err}"
    );
}

#[test]
fn missing_file_is_an_io_error() {
    let err = decode_image(Path::new("/nonexistent/face.png")).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/face.png"));
}

#[test]
fn one_pixel_image_is_too_small() {
    let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(1, 1, Rgb([1, 2, 3])));
    let err = decode_bytes(&encode(&img, ImageFormat::Png), Path::new("dot.png")).unwrap_err();
    match err {
        DataError::TooSmall { width, height, .. } => assert_eq!((width, height), (1, 1)),
        other => panic!("expected TooSmall, got {other:?}"),
    }
}

#[test]
fn grayscale_is_replicated() {
    let img = DynamicImage::ImageLuma8(GrayImage::from_fn(4, 3, |x, y| Luma([(x * 10 + y) as u8])));
    let rgb = decode_bytes(&encode(&img, ImageFormat::Png), Path::new("g.png")).expect("decode");
    assert_eq!(rgb.dimensions(), (4, 3));
    assert_eq!(rgb.get_pixel(3, 2), &Rgb([32, 32, 32]));
}

#[test]
fn grey_alpha_and_rgba_drop_alpha() {
    let la = DynamicImage::ImageLumaA8(ImageBuffer::from_pixel(3, 3, LumaA([77u8, 0])));
    let rgb = decode_bytes(&encode(&la, ImageFormat::Png), Path::new("la.png")).expect("decode");
    assert_eq!(rgb.get_pixel(1, 1), &Rgb([77, 77, 77]));

    let rgba = DynamicImage::ImageRgba8(RgbaImage::from_pixel(3, 3, Rgba([200, 100, 50, 10])));
    let rgb = decode_bytes(&encode(&rgba, ImageFormat::Png), Path::new("a.png")).expect("decode");
    assert_eq!(rgb.get_pixel(2, 0), &Rgb([200, 100, 50]));
}

#[test]
fn sixteen_bit_is_rescaled() {
    let img = DynamicImage::ImageRgb16(ImageBuffer::from_pixel(2, 2, Rgb([65535u16, 32896, 0])));
    let rgb = decode_bytes(&encode(&img, ImageFormat::Png), Path::new("deep.png")).expect("decode");
    assert_eq!(rgb.get_pixel(0, 0), &Rgb([255, 128, 0]));

    let grey16 = DynamicImage::ImageLuma16(ImageBuffer::from_pixel(2, 2, Luma([257u16 * 9])));
    let rgb =
        decode_bytes(&encode(&grey16, ImageFormat::Png), Path::new("g16.png")).expect("decode");
    assert_eq!(rgb.get_pixel(1, 1), &Rgb([9, 9, 9]));
}

#[test]
fn bmp_and_webp_decode() {
    let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(5, 4, Rgb([9, 99, 199])));
    for (format, name) in [(ImageFormat::Bmp, "x.bmp"), (ImageFormat::WebP, "x.webp")] {
        let rgb = decode_bytes(&encode(&img, format), Path::new(name)).expect(name);
        assert_eq!(rgb.dimensions(), (5, 4));
        assert_eq!(rgb.get_pixel(2, 2), &Rgb([9, 99, 199]), "{name}");
    }
}

/// A minimal little-endian TIFF block holding only the Orientation tag (0x0112).
fn exif_orientation(value: u16) -> Vec<u8> {
    let mut t = b"II*\0".to_vec();
    t.extend_from_slice(&8u32.to_le_bytes()); // offset of IFD0
    t.extend_from_slice(&1u16.to_le_bytes()); // one entry
    t.extend_from_slice(&0x0112u16.to_le_bytes());
    t.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    t.extend_from_slice(&1u32.to_le_bytes()); // count
    t.extend_from_slice(&value.to_le_bytes());
    t.extend_from_slice(&[0, 0]); // value padding
    t.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    t
}

#[test]
fn exif_orientation_is_applied() {
    // 32x16, left half red, right half blue. Orientation 6 = "rotate 90 clockwise to display".
    let img = RgbImage::from_fn(32, 16, |x, _| {
        if x < 16 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    });
    let mut jpeg = Vec::new();
    let mut enc = JpegEncoder::new_with_quality(&mut jpeg, 95);
    enc.set_exif_metadata(exif_orientation(6)).expect("exif");
    enc.write_image(img.as_raw(), 32, 16, image::ExtendedColorType::Rgb8)
        .expect("jpeg");

    let rgb = decode_bytes(&jpeg, Path::new("phone.jpg")).expect("decode");
    assert_eq!(rgb.dimensions(), (16, 32), "width and height must swap");
    // Clockwise rotation puts the old left column on top.
    let top = rgb.get_pixel(8, 4);
    let bottom = rgb.get_pixel(8, 28);
    assert!(
        top[0] > 200 && top[2] < 60,
        "top should be red, got {top:?}"
    );
    assert!(
        bottom[2] > 200 && bottom[0] < 60,
        "bottom should be blue, got {bottom:?}"
    );
}
