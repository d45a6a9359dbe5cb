//! RGB picture → the normalised tensor a vision tower takes, step for step as the checkpoint's
//! processor (Pillow backends of `CLIPImageProcessor` and `SiglipImageProcessor`, OpenCLIP's
//! torchvision transform): resize (shortest side, or straight to a size), centre-crop, rescale,
//! normalise.

use fast_image_resize::images::Image as ResizeImage;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use super::config::{PreprocessConfig, Resample};

/// One image ready for the vision tower: channel-major (3, height, width) f32 values.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessedImage {
    pub pixels: Vec<f32>,
    pub height: usize,
    pub width: usize,
}

impl PreprocessConfig {
    /// The smallest (width, height) a picture may be decoded at and still give this pipeline
    /// the same input: the resize target (the shortest edge on both axes covers any aspect
    /// ratio). `None` without a resize step: the picture is used at its own size.
    pub fn min_decode_size(&self) -> Option<(u32, u32)> {
        let min_size = match self.exact_size {
            Some((h, w)) => (w, h),
            None => (self.shortest_edge, self.shortest_edge),
        };
        self.do_resize.then_some(min_size)
    }

    pub fn apply(&self, rgb: &RgbImage) -> PreprocessedImage {
        let resized;
        let image = if self.do_resize {
            let (w, h) = match self.exact_size {
                Some((h, w)) => (w, h),
                None => resized_size(rgb.width(), rgb.height(), self.shortest_edge),
            };
            resized = resize(rgb, w, h, self.resample);
            &resized
        } else {
            rgb
        };
        let (out_h, out_w) = if self.do_center_crop {
            (self.crop_height as usize, self.crop_width as usize)
        } else {
            (image.height() as usize, image.width() as usize)
        };
        // A crop larger than the image pads it with zeros, centred.
        let (img_w, img_h) = (image.width() as i64, image.height() as i64);
        let offset = |orig: i64, crop: i64| self.crop_rounding.offset(orig, crop);
        let (top, left) = (offset(img_h, out_h as i64), offset(img_w, out_w as i64));

        // (value * factor - mean) / std, folded into one multiply and one subtract per pixel.
        let affine = |c: usize| -> (f32, f32) {
            let factor = if self.do_rescale { self.rescale_factor } else { 1.0 };
            let (mean, std) = if self.do_normalize { (self.image_mean[c], self.image_std[c]) } else { (0.0, 1.0) };
            (factor / std, mean / std)
        };
        let mut pixels = vec![0f32; 3 * out_h * out_w];
        let raw = image.as_raw();
        for c in 0..3 {
            let (mul, sub) = affine(c);
            let plane = &mut pixels[c * out_h * out_w..(c + 1) * out_h * out_w];
            for y in 0..out_h {
                let sy = y as i64 + top;
                for x in 0..out_w {
                    let sx = x as i64 + left;
                    let value = if (0..img_h).contains(&sy) && (0..img_w).contains(&sx) {
                        raw[(sy as usize * img_w as usize + sx as usize) * 3 + c]
                    } else {
                        0
                    };
                    plane[y * out_w + x] = value as f32 * mul - sub;
                }
            }
        }
        PreprocessedImage { pixels, height: out_h, width: out_w }
    }
}

/// transformers' `get_resize_output_image_size(default_to_square=False)`: the short side becomes
/// `shortest_edge`, the long side `int(shortest_edge * long / short)` (truncated, as Python's int()).
fn resized_size(width: u32, height: u32, shortest_edge: u32) -> (u32, u32) {
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    let new_long = ((shortest_edge as f64 * long as f64 / short as f64) as u32).max(1);
    if width <= height {
        (shortest_edge, new_long)
    } else {
        (new_long, shortest_edge)
    }
}

/// Pillow's separable convolution resize (support widened by the scale factor when
/// downscaling), which `fast_image_resize` reproduces with SIMD.
fn resize(rgb: &RgbImage, width: u32, height: u32, resample: Resample) -> RgbImage {
    if (width, height) == rgb.dimensions() {
        return rgb.clone();
    }
    let alg = match resample {
        Resample::Nearest => ResizeAlg::Nearest,
        Resample::Box => ResizeAlg::Convolution(FilterType::Box),
        Resample::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
        Resample::Hamming => ResizeAlg::Convolution(FilterType::Hamming),
        Resample::Bicubic => ResizeAlg::Convolution(FilterType::CatmullRom),
        Resample::Lanczos => ResizeAlg::Convolution(FilterType::Lanczos3),
    };
    let src = ResizeImage::from_vec_u8(rgb.width(), rgb.height(), rgb.as_raw().clone(), PixelType::U8x3)
        .expect("an RgbImage buffer always holds width*height*3 bytes");
    let mut dst = ResizeImage::new(width, height, PixelType::U8x3);
    Resizer::new()
        .resize(&src, &mut dst, &ResizeOptions::new().resize_alg(alg))
        .expect("source and destination are both U8x3 and non-empty");
    RgbImage::from_raw(width, height, dst.into_vec()).expect("destination buffer is width*height*3 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_aspect_ratio_like_transformers() {
        assert_eq!(resized_size(640, 427, 224), (335, 224)); // int(224 * 640 / 427) = 335
        assert_eq!(resized_size(427, 640, 224), (224, 335));
        assert_eq!(resized_size(100, 100, 224), (224, 224));
    }

    #[test]
    fn crop_larger_than_image_pads_with_zero_like_transformers() {
        let mut cfg = PreprocessConfig::clip_default(4);
        cfg.do_resize = false;
        cfg.do_normalize = false;
        cfg.do_rescale = false;
        let img = RgbImage::from_pixel(2, 3, image::Rgb([9, 9, 9]));
        let out = cfg.apply(&img);
        // width 2 -> 4: one zero column each side; height 3 -> 4: padded top ceil(1/2)=1
        let row = |y: usize| out.pixels[y * 4..y * 4 + 4].to_vec();
        assert_eq!(row(0), vec![0.0; 4]);
        assert_eq!(row(1), vec![0.0, 9.0, 9.0, 0.0]);
        assert_eq!(row(3), vec![0.0, 9.0, 9.0, 0.0]);
    }

    #[test]
    fn torchvision_crop_rounds_half_to_even_where_transformers_floors() {
        use crate::model::config::CropRounding;
        // Python: int(round(111 / 2)) = 56, int(round(101 / 2)) = 50.
        assert_eq!(CropRounding::HalfToEven.offset(335, 224), 56);
        assert_eq!(CropRounding::HalfToEven.offset(325, 224), 50);
        assert_eq!(CropRounding::HalfToEven.offset(324, 224), 50);
        assert_eq!(CropRounding::Floor.offset(335, 224), 55);
        assert_eq!(CropRounding::Floor.offset(2, 4), -1);
    }
}
