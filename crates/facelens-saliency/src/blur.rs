//! Gaussian smoothing of saliency maps for display (FGGB paper: kernel 25, sigma 5).

/// Separable Gaussian blur with reflect-101 borders (OpenCV's default), in a new buffer.
pub fn gaussian_blur(map: &[f32], height: usize, width: usize, ksize: usize, sigma: f32) -> Vec<f32> {
    let r = ksize / 2;
    let kernel: Vec<f32> = {
        let k: Vec<f32> = (0..ksize).map(|i| (-((i as f32 - r as f32).powi(2)) / (2.0 * sigma * sigma)).exp()).collect();
        let s: f32 = k.iter().sum();
        k.into_iter().map(|v| v / s).collect()
    };
    let reflect = |i: isize, n: usize| -> usize {
        let n = n as isize;
        if n == 1 {
            return 0;
        }
        let mut i = i;
        while i < 0 || i >= n {
            i = if i < 0 { -i } else { 2 * (n - 1) - i };
        }
        i as usize
    };
    let mut tmp = vec![0f32; map.len()];
    for y in 0..height {
        for x in 0..width {
            tmp[y * width + x] = (0..ksize)
                .map(|i| kernel[i] * map[y * width + reflect(x as isize + i as isize - r as isize, width)])
                .sum();
        }
    }
    let mut out = vec![0f32; map.len()];
    for y in 0..height {
        for x in 0..width {
            out[y * width + x] = (0..ksize)
                .map(|i| kernel[i] * tmp[reflect(y as isize + i as isize - r as isize, height) * width + x])
                .sum();
        }
    }
    out
}

/// FGGB's display blur.
pub fn display_blur(map: &[f32], height: usize, width: usize) -> Vec<f32> {
    gaussian_blur(map, height, width, 25, 5.0)
}
