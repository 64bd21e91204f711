//! Decoder architecture: shapes, range, gradients, seeded init, save/load.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use facelens_recon::decoder::{build_seeded, is_buffer, to_crops};
use facelens_recon::{ActivationKind, Decoder, DecoderConfig, NormKind, ReconError, UpsampleKind};

fn z(n: usize, d: usize) -> Tensor {
    let v: Vec<f32> = (0..n * d)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
        .collect();
    Tensor::from_vec(v, (n, d), &Device::Cpu).unwrap()
}

#[test]
fn every_variant_maps_embeddings_to_112px_rgb_in_range_and_trains_every_parameter() {
    for block in [UpsampleKind::NearestConv, UpsampleKind::ConvTranspose] {
        for norm in [NormKind::Batch, NormKind::Group] {
            for activation in [ActivationKind::Prelu, ActivationKind::LeakyRelu] {
                let cfg = DecoderConfig {
                    width: 16,
                    min_channels: 4,
                    groups: 4,
                    block,
                    norm,
                    activation,
                    ..DecoderConfig::tiny(8)
                };
                let (dec, varmap) = build_seeded(&cfg, 1, &Device::Cpu).unwrap();
                let out = dec.forward_t(&z(2, 8), true).unwrap();
                assert_eq!(out.dims(), &[2, 3, 112, 112]);
                let v: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
                assert!(v.iter().all(|x| x.is_finite() && x.abs() <= 1.0));
                let grads = out.sqr().unwrap().mean_all().unwrap().backward().unwrap();
                for (name, var) in varmap.data().lock().unwrap().iter() {
                    if is_buffer(name) {
                        assert!(
                            grads.get(var).is_none(),
                            "{name} is a buffer but got a gradient"
                        );
                        continue;
                    }
                    let g = grads
                        .get(var)
                        .unwrap_or_else(|| panic!("{block:?}/{norm:?}: no gradient for {name}"));
                    let s: f32 = g.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
                    assert!(s > 0.0 && s.is_finite(), "{name}: gradient sum {s}");
                }
            }
        }
    }
}

#[test]
fn default_config_is_the_designed_architecture() {
    let cfg = DecoderConfig::default();
    assert_eq!((cfg.embedding_dim, cfg.width), (512, 512));
    assert_eq!(
        (0..4).map(|i| cfg.block_channels(i)).collect::<Vec<_>>(),
        vec![256, 128, 64, 32]
    );
    let varmap = candle_nn::VarMap::new();
    Decoder::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let data = varmap.data().lock().unwrap();
    assert_eq!(data["fc.weight"].dims(), &[512 * 49, 512]);
    assert_eq!(data["blocks.0.0.conv.weight"].dims(), &[256, 512, 3, 3]);
    assert_eq!(data["blocks.3.0.conv.weight"].dims(), &[32, 64, 3, 3]);
    assert_eq!(data["to_rgb.weight"].dims(), &[3, 32, 3, 3]);
    assert!(data.contains_key("blocks.1.0.norm.running_var"));
}

#[test]
fn seeded_init_is_reproducible_and_seed_dependent() {
    let cfg = DecoderConfig::tiny(8);
    let get = |seed| {
        let (_, vm) = build_seeded(&cfg, seed, &Device::Cpu).unwrap();
        let d = vm.data().lock().unwrap();
        d["fc.weight"]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(get(3), get(3));
    assert_ne!(get(3), get(4));
    let (_, vm) = build_seeded(&cfg, 3, &Device::Cpu).unwrap();
    let d = vm.data().lock().unwrap();
    assert_eq!(
        d["fc_act.weight"].as_tensor().to_vec1::<f32>().unwrap()[0],
        0.25
    );
    assert_eq!(
        d["fc_norm.running_var"]
            .as_tensor()
            .to_vec1::<f32>()
            .unwrap()[0],
        1.0
    );
}

#[test]
fn decoding_normalises_the_embedding_and_rejects_wrong_shapes() {
    let cfg = DecoderConfig::tiny(8);
    let (dec, _) = build_seeded(&cfg, 0, &Device::Cpu).unwrap();
    let a = dec.decode(&z(1, 8)).unwrap();
    let b = dec.decode(&(z(1, 8) * 3.0).unwrap()).unwrap();
    let diff: f32 = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(diff < 1e-5, "scale changed the output by {diff}");
    assert!(matches!(
        dec.decode(&z(1, 7)),
        Err(ReconError::UnexpectedShape { .. })
    ));
    assert_eq!(to_crops(&dec.decode(&z(3, 8)).unwrap()).unwrap().len(), 3);
}

#[test]
fn exported_decoder_loads_back_and_bad_files_are_refused() {
    let cfg = DecoderConfig::tiny(8);
    let (dec, vm) = build_seeded(&cfg, 2, &Device::Cpu).unwrap();
    let tensors: Vec<(String, Tensor)> = vm
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("decoder.safetensors");
    facelens_recon::checkpoint::save_decoder(&p, &cfg, &tensors).unwrap();
    let back = facelens_recon::load_decoder(&p, &Device::Cpu).unwrap();
    let (x, y) = (
        dec.decode(&z(2, 8)).unwrap(),
        back.decode(&z(2, 8)).unwrap(),
    );
    assert_eq!(
        x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );

    // A missing tensor is named.
    let fewer: Vec<(String, Tensor)> = tensors
        .iter()
        .filter(|(k, _)| k != "to_rgb.bias")
        .cloned()
        .collect();
    facelens_recon::checkpoint::save_decoder(&p, &cfg, &fewer).unwrap();
    let err = facelens_recon::load_decoder(&p, &Device::Cpu)
        .err()
        .unwrap();
    assert!(
        matches!(&err, ReconError::MissingTensor { name, .. } if name == "to_rgb.bias"),
        "{err}"
    );
    // NaN weights are refused.
    let nan: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(k, v)| {
            if k == "to_rgb.bias" {
                (k.clone(), (v * f64::NAN).unwrap())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect();
    facelens_recon::checkpoint::save_decoder(&p, &cfg, &nan).unwrap();
    assert!(matches!(
        facelens_recon::load_decoder(&p, &Device::Cpu),
        Err(ReconError::NonFinite { .. })
    ));
}
