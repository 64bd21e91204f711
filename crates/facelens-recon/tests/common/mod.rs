//! Small deterministic fixtures: synthetic aligned faces, a tiny frozen "backbone" and the
//! training data built from them, so trainer tests run in seconds without model files.
#![allow(dead_code)]

use std::sync::Arc;

use candle_core::{Device, Module, Tensor};
use facelens_recon::data::{BatchPlan, EmbeddingTable, InMemoryFaces, TrainData};
use facelens_recon::decoder::crop_to_unit;
use facelens_recon::losses::{FrozenBackbone, ModelInput};
use facelens_core::rng::Xoshiro256;
use image::RgbImage;

pub const DIM: usize = 16;

/// conv 5x5 stride 4 (3 -> 8) + ReLU, 4x4 average pool (28 -> 7), dense to `DIM`. Weights are
/// plain tensors, as a loaded backbone's are.
pub struct TinyNet {
    conv: Tensor,
    fc: Tensor,
}

impl TinyNet {
    pub fn new(seed: u64) -> Self {
        let mut r = Xoshiro256::new(seed);
        let mut t = |shape: &[usize], scale: f64| {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|_| (r.normal() * scale) as f32).collect();
            Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
        };
        Self {
            conv: t(&[8, 3, 5, 5], 0.2),
            fc: t(&[DIM, 8 * 7 * 7], 0.05),
        }
    }

    pub fn conv_weight(&self) -> &Tensor {
        &self.conv
    }
}

impl Module for TinyNet {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let n = xs.dim(0)?;
        let h = xs.conv2d(&self.conv, 2, 4, 1, 1)?.relu()?.avg_pool2d(4)?;
        h.reshape((n, 8 * 7 * 7))?.matmul(&self.fc.t()?)
    }
}

pub fn tiny_backbone() -> FrozenBackbone {
    FrozenBackbone::new(Arc::new(TinyNet::new(11)), ModelInput::identity(), DIM)
}

/// `n` smooth, different 112x112 "faces" with a black border on the left and top (like the
/// alignment warp leaves).
pub fn synthetic_faces(n: usize) -> InMemoryFaces {
    let crops = (0..n)
        .map(|i| {
            let f = i as f32 + 1.0;
            RgbImage::from_fn(112, 112, |x, y| {
                if x < 6 || y < 4 {
                    return image::Rgb([0, 0, 0]);
                }
                let (xf, yf) = (x as f32 / 112.0, y as f32 / 112.0);
                let v = |a: f32, b: f32| (127.0 + 100.0 * (a * xf * f + b * yf + f).sin()) as u8;
                image::Rgb([v(3.0, 2.0), v(1.5, 4.0), v(2.5, 1.0)])
            })
        })
        .collect();
    InMemoryFaces {
        names: (0..n).map(|i| format!("face_{i:03}.png")).collect(),
        crops,
    }
}

/// Normalised embeddings of the crops (and their grey versions) through `TinyNet`.
pub fn tiny_table(faces: &InMemoryFaces) -> EmbeddingTable {
    let net = TinyNet::new(11);
    let embed = |crops: Vec<RgbImage>| -> Vec<f32> {
        let mut xs = Vec::new();
        for c in &crops {
            crop_to_unit(c.as_raw(), &mut xs);
        }
        let t = Tensor::from_vec(xs, (crops.len(), 3, 112, 112), &Device::Cpu).unwrap();
        let e: Vec<Vec<f32>> = net.forward(&t).unwrap().to_vec2().unwrap();
        e.iter()
            .flat_map(|v| facelens_models::preprocess::l2_normalise(v))
            .collect()
    };
    EmbeddingTable {
        dim: DIM,
        names: faces.names.clone(),
        colour: embed(faces.crops.clone()),
        grey: Some(embed(
            faces
                .crops
                .iter()
                .map(facelens_recon::data::to_grey)
                .collect(),
        )),
        model: "tiny".into(),
    }
}

pub fn tiny_data(n: usize, batch: usize, seed: u64) -> Arc<TrainData> {
    let faces = synthetic_faces(n);
    let table = tiny_table(&faces);
    let plan = BatchPlan {
        seed,
        batch_size: batch,
        len: n,
        grey_fraction: 0.3,
    };
    Arc::new(TrainData::new(Arc::new(faces), table, plan).unwrap())
}

/// Bit patterns of a tensor, for exact comparisons.
pub fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}
