//! Turning a CHW input gradient into one map per pixel.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelReduction {
    /// Mean over channels of |grad| (FGGB's default).
    #[default]
    MeanAbs,
    /// Max over channels of |grad|.
    MaxAbs,
}

/// `[C][P]` gradient -> `[P]` map.
pub fn reduce_channels(grad: &[f32], channels: usize, how: ChannelReduction, out: &mut [f32]) {
    let p = out.len();
    match how {
        ChannelReduction::MeanAbs => {
            out.iter_mut().enumerate().for_each(|(i, o)| {
                *o = (0..channels).map(|c| grad[c * p + i].abs()).sum::<f32>() / channels as f32
            });
        }
        ChannelReduction::MaxAbs => {
            out.iter_mut()
                .enumerate()
                .for_each(|(i, o)| *o = (0..channels).map(|c| grad[c * p + i].abs()).fold(0.0, f32::max));
        }
    }
}

/// `g / (||g||_2 + 1e-8)`, in place.
pub fn l2_normalise_map(map: &mut [f32]) {
    let n = map.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt() as f32;
    let d = n + 1e-8;
    map.iter_mut().for_each(|v| *v /= d);
}
