//! The baselines of docs/design.md §7: valid maps on a tiny random MobileFaceNet, determinism,
//! CorrRISE's shared mask set, Grad-CAM's gradient at the last feature map, and on a toy
//! model whose embedding reads only the top-left quadrant, maps that find that quadrant.

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use facelens_models::mobilefacenet::{Config, MobileFaceNet};
use facelens_models::reverse::Net;
use facelens_saliency::corrrise::{CorrRise, CorrRiseConfig};
use facelens_saliency::gradcam::GradCam;
use facelens_saliency::lime::{Lime, LimeConfig};
use facelens_saliency::random::{RandomConfig, RandomMaps};
use facelens_saliency::rise::{Rise, RiseConfig};
use facelens_saliency::{
    Explainer, Explanation, FacePair, GradientEngine, Linearised, NetEngine, Result, SaliencyMaps,
};

const S: usize = 112;

fn tiny_net(seed: u64) -> Net {
    let map = VarMap::new();
    let m = MobileFaceNet::new(&Config::tiny(), VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu)).unwrap();
    facelens_models::weights::fill_deterministic(&map, seed).unwrap();
    Net::from_mobilefacenet(&m).unwrap()
}

/// Deterministic values in [-1, 1).
fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

/// Explainers with small budgets so that a test runs in seconds.
fn fast_explainers() -> Vec<Box<dyn Explainer>> {
    vec![
        Box::new(RandomMaps::default()),
        Box::new(CorrRise::new(CorrRiseConfig { masks: 40, ..Default::default() })),
        Box::new(Rise::new(RiseConfig { masks: 48, ..Default::default() })),
        Box::new(Lime::new(LimeConfig { samples: 48, ..Default::default() })),
        Box::new(GradCam::default()),
    ]
}

fn total(v: &[f32]) -> f64 {
    v.iter().map(|x| *x as f64).sum()
}

fn check_valid(e: &Explanation) {
    let m = &e.maps;
    assert_eq!((m.height, m.width), (S, S), "{}", e.method);
    for (name, v) in m.named() {
        assert_eq!(v.len(), S * S, "{}/{name}", e.method);
        assert!(v.iter().all(|x| x.is_finite() && *x >= 0.0), "{}/{name} has negative or non-finite values", e.method);
    }
    assert!(m.named().iter().any(|(_, v)| total(v) > 0.0), "{}: all four maps are zero", e.method);
}

#[test]
fn registry_knows_every_baseline() {
    for name in ["random", "corrrise", "rise", "lime", "gradcam"] {
        assert!(facelens_saliency::METHODS.contains(&name), "{name} not in METHODS");
        assert_eq!(facelens_saliency::by_name(name).unwrap().name(), name);
    }
}

#[test]
fn maps_are_finite_non_negative_full_resolution_and_deterministic() {
    let engine = NetEngine::new(tiny_net(11), Some(16));
    let (a, b) = (noise(1, 3 * S * S), noise(2, 3 * S * S));
    let pair = FacePair { a: &a, b: &b };
    let cos = {
        let e = engine.embed(&[a.clone(), b.clone()].concat(), 2).unwrap();
        let d = engine.embedding_dim();
        facelens_models::preprocess::cosine(&e[..d], &e[d..])
    };
    for explainer in fast_explainers() {
        let first = explainer.explain(&engine, pair, 0.2).unwrap();
        check_valid(&first);
        assert_eq!(first.method, explainer.name());
        assert!((first.score - cos).abs() < 1e-5, "{}: score {} vs cosine {cos}", first.method, first.score);
        let again = explainer.explain(&engine, pair, 0.2).unwrap();
        assert_eq!(first.maps, again.maps, "{} is not deterministic", first.method);
    }
}

#[test]
fn seeds_change_random_masks_and_samples() {
    let engine = NetEngine::new(tiny_net(12), Some(16));
    let (a, b) = (noise(3, 3 * S * S), noise(4, 3 * S * S));
    let pair = FacePair { a: &a, b: &b };
    let maps = |e: &dyn Explainer| e.explain(&engine, pair, 0.2).unwrap().maps;
    let pairs: Vec<(Box<dyn Explainer>, Box<dyn Explainer>)> = vec![
        (Box::new(RandomMaps::new(RandomConfig { seed: 1 })), Box::new(RandomMaps::new(RandomConfig { seed: 2 }))),
        (
            Box::new(CorrRise::new(CorrRiseConfig { masks: 30, seed: 1, ..Default::default() })),
            Box::new(CorrRise::new(CorrRiseConfig { masks: 30, seed: 2, ..Default::default() })),
        ),
        (
            Box::new(Rise::new(RiseConfig { masks: 30, seed: 1, ..Default::default() })),
            Box::new(Rise::new(RiseConfig { masks: 30, seed: 2, ..Default::default() })),
        ),
        (
            Box::new(Lime::new(LimeConfig { samples: 30, seed: 1, ..Default::default() })),
            Box::new(Lime::new(LimeConfig { samples: 30, seed: 2, ..Default::default() })),
        ),
    ];
    for (x, y) in &pairs {
        assert_ne!(maps(x.as_ref()), maps(y.as_ref()), "{}: the seed has no effect", x.name());
    }
    // Random maps rank every pixel: strictly positive, so no ties.
    assert!(maps(pairs[0].0.as_ref()).named().iter().all(|(_, v)| v.iter().all(|x| *x > 0.0)));
}

#[test]
fn corrrise_masks_are_three_30px_squares_inside_the_image_shared_by_all_calls() {
    let corr = CorrRise::default();
    let set = corr.mask_set(S, S);
    assert_eq!(set.len(), 500);
    for squares in &set {
        assert_eq!(squares.len(), 3);
        for sq in squares {
            assert_eq!(sq.size, 30);
            assert!(sq.x + 30 <= S && sq.y + 30 <= S, "{sq:?} leaves the image");
        }
    }
    // Fixed seed: the same set every call and for every explainer built from the defaults.
    assert_eq!(set, corr.mask_set(S, S));
    assert_eq!(set, CorrRise::default().mask_set(S, S));
    let distinct: std::collections::HashSet<_> = set.iter().map(|m| (m[0].x, m[0].y)).collect();
    assert!(distinct.len() > 400, "masks barely vary: {} distinct", distinct.len());
    // Positions cover the whole range, corners included.
    let xs: Vec<usize> = set.iter().flatten().map(|s| s.x).collect();
    assert_eq!((xs.iter().min(), xs.iter().max()), (Some(&0), Some(&(S - 30))));
}

#[test]
fn corrrise_is_zero_where_no_mask_ever_occluded() {
    let engine = NetEngine::new(tiny_net(13), Some(16));
    let (a, b) = (noise(5, 3 * S * S), noise(6, 3 * S * S));
    let corr = CorrRise::new(CorrRiseConfig { masks: 12, ..Default::default() });
    let mut covered = vec![false; S * S];
    for sq in corr.mask_set(S, S).iter().flatten() {
        for y in sq.y..sq.y + sq.size {
            covered[y * S + sq.x..y * S + sq.x + sq.size].iter_mut().for_each(|c| *c = true);
        }
    }
    assert!(covered.iter().any(|c| !c), "12 masks should leave pixels untouched");
    let e = corr.explain(&engine, FacePair { a: &a, b: &b }, 0.2).unwrap();
    for (name, v) in e.maps.named() {
        assert!(v.iter().zip(&covered).all(|(x, c)| *c || *x == 0.0), "{name} is non-zero off the masks");
    }
    assert!(e.maps.sa_pos.iter().zip(&covered).any(|(x, c)| *c && *x > 0.0) || total(&e.maps.sa_neg) > 0.0);
}

#[test]
fn gradcam_needs_the_lowered_network_and_gives_a_7x7_resolution_map() {
    let err = GradCam::default().explain(&Quadrant::new(), FacePair { a: &quad_image(1), b: &quad_image(1) }, 0.2);
    let msg = err.expect_err("toy engine has no network").to_string();
    assert!(msg.contains("NetEngine"), "unclear error: {msg}");

    let net = tiny_net(14);
    let layer = net.last_buffer_with_spatial(7, 7).expect("a 7x7 feature map");
    assert!(net.shapes[layer + 1..].iter().all(|s| s.plane() == 1), "a later buffer is spatial");
    let engine = NetEngine::new(net, Some(16));
    let (a, b) = (noise(7, 3 * S * S), noise(8, 3 * S * S));
    let e = GradCam::default().explain(&engine, FacePair { a: &a, b: &b }, 0.2).unwrap();
    check_valid(&e);
    // S+ and S- never overlap, and the map is smooth at the scale of a 16-px cell.
    assert!(e.maps.sa_pos.iter().zip(&e.maps.sa_neg).all(|(p, n)| *p == 0.0 || *n == 0.0));
    let signed: Vec<f32> = e.maps.sa_pos.iter().zip(&e.maps.sa_neg).map(|(p, n)| p - n).collect();
    let range = signed.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(signed.windows(2).enumerate().all(|(i, w)| (i + 1) % S == 0 || (w[1] - w[0]).abs() <= range / 8.0));
}

/// Chain rule through the feature map: the gradient at a buffer that every path to the
/// output crosses, dotted with how that buffer moves under a small input perturbation,
/// equals the change of the output (central differences on both sides, so the PReLU kinks
/// of a random net do not matter). Stopping at buffer 0 is the plain input VJP.
#[test]
fn vjp_to_an_intermediate_buffer_obeys_the_chain_rule() {
    let net = tiny_net(15);
    let d = net.output_dim();
    let x = noise(9, 3 * S * S);
    let seed = noise(10, d);
    let tape = net.tape(&x);
    assert_eq!(net.vjp_to(&tape, &seed, 1, 0), net.vjp(&tape, &seed, 1));
    let layer = net.last_buffer_with_spatial(7, 7).unwrap();
    let dir = noise(11, 3 * S * S);
    let eps = 1e-3f32;
    let at = |sign: f32| net.tape(&x.iter().zip(&dir).map(|(v, u)| v + sign * eps * u).collect::<Vec<_>>());
    let (plus, minus) = (at(1.0), at(-1.0));
    let out_change: f64 =
        plus.output().iter().zip(minus.output()).zip(&seed).map(|((p, m), s)| (p - m) as f64 * *s as f64).sum();
    // The MobileFaceNet tail (conv_sep, conv_head) has no skips: each of its buffers is a cut,
    // and the two before `layer` have a PReLU downstream.
    for buffer in layer - 2..=layer {
        let g = net.vjp_to(&tape, &seed, 1, buffer);
        assert_eq!(g.len(), net.shapes[buffer].numel());
        assert_eq!(net.activation(&tape, buffer).len(), g.len());
        let (ap, am) = (net.activation(&plus, buffer), net.activation(&minus, buffer));
        let through: f64 = g.iter().zip(ap.iter().zip(am)).map(|(g, (p, m))| *g as f64 * (p - m) as f64).sum();
        assert!(
            (through - out_change).abs() <= 1e-2 * out_change.abs(),
            "buffer {buffer}: {through} through the buffer vs {out_change} at the output"
        );
    }
    // Several rows at once equal one row at a time.
    let g = net.vjp_to(&tape, &seed, 1, layer);
    let both = net.vjp_to(&tape, &[seed.clone(), noise(12, d)].concat(), 2, layer);
    assert!(both[..g.len()].iter().zip(&g).all(|(a, b)| (a - b).abs() <= 1e-5 * b.abs().max(1e-3)));
}

// ---------------------------------------------------------------------------------------
// A toy model with a known answer: only the top-left quadrant reaches the embedding.

const Q: usize = S / 2;
const D: usize = 16;

/// `f(x) = W x_TL`, a fixed random projection of the top-left 56x56 quadrant.
struct Quadrant {
    weight: Vec<f32>, // [D][3][Q][Q]
}

impl Quadrant {
    fn new() -> Self {
        Self { weight: noise(99, D * 3 * Q * Q) }
    }

    fn embed_one(&self, img: &[f32]) -> Vec<f32> {
        (0..D)
            .map(|k| {
                let w = &self.weight[k * 3 * Q * Q..(k + 1) * 3 * Q * Q];
                let mut acc = 0f32;
                for c in 0..3 {
                    for y in 0..Q {
                        let row = &img[c * S * S + y * S..][..Q];
                        let wr = &w[(c * Q + y) * Q..][..Q];
                        acc += row.iter().zip(wr).map(|(a, b)| a * b).sum::<f32>();
                    }
                }
                acc
            })
            .collect()
    }
}

struct QuadrantLin<'a> {
    model: &'a Quadrant,
    embedding: Vec<f32>,
}

impl Linearised for QuadrantLin<'_> {
    fn embedding(&self) -> &[f32] {
        &self.embedding
    }
    fn vjp(&self, seeds: &[f32], rows: usize) -> Result<Vec<f32>> {
        let mut out = vec![0f32; rows * 3 * S * S];
        for r in 0..rows {
            for k in 0..D {
                let s = seeds[r * D + k];
                for c in 0..3 {
                    for y in 0..Q {
                        for x in 0..Q {
                            out[r * 3 * S * S + c * S * S + y * S + x] +=
                                s * self.model.weight[((k * 3 + c) * Q + y) * Q + x];
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

impl GradientEngine for Quadrant {
    fn input_shape(&self) -> (usize, usize, usize) {
        (3, S, S)
    }
    fn embedding_dim(&self) -> usize {
        D
    }
    fn embed(&self, images: &[f32], n: usize) -> Result<Vec<f32>> {
        Ok(images.chunks(3 * S * S).take(n).flat_map(|img| self.embed_one(img)).collect())
    }
    fn linearise<'a>(&'a self, image: &[f32]) -> Result<Box<dyn Linearised + 'a>> {
        self.check_image(image)?;
        Ok(Box::new(QuadrantLin { model: self, embedding: self.embed_one(image) }))
    }
    fn rows_per_pass(&self) -> usize {
        D
    }
    fn passes(&self) -> (u64, u64) {
        (0, 0)
    }
}

/// A face-like image: a distinct colour per quadrant (so superpixels can follow the
/// quadrant's edges), smooth shading, a little noise.
fn quad_image(seed: u64) -> Vec<f32> {
    let base = [[0.4, 0.1, -0.2], [-0.3, 0.5, 0.2], [0.1, -0.4, 0.6], [-0.5, -0.1, 0.3]];
    let n = noise(seed, 3 * S * S);
    (0..3 * S * S)
        .map(|i| {
            let (c, y, x) = (i / (S * S), (i / S) % S, i % S);
            let q = (y >= Q) as usize * 2 + (x >= Q) as usize;
            base[q][c] + 0.2 * (x as f32 / 9.0).sin() * (y as f32 / 11.0).cos() + 0.05 * n[i]
        })
        .collect()
}

/// Share of the mass of `maps` (summed per image) inside the top-left quadrant grown by
/// `margin` pixels, for images A and B.
fn share(maps: &[&[f32]], margin: usize) -> f64 {
    let (mut inside, mut all) = (0f64, 0f64);
    for m in maps.iter() {
        for (i, v) in m.iter().enumerate() {
            all += *v as f64;
            if i / S < Q + margin && i % S < Q + margin {
                inside += *v as f64;
            }
        }
    }
    inside / all.max(1e-30)
}

fn similarity(m: &SaliencyMaps) -> [&[f32]; 2] {
    [&m.sa_pos, &m.sb_pos]
}

fn all_four(m: &SaliencyMaps) -> [&[f32]; 4] {
    [&m.sa_pos, &m.sa_neg, &m.sb_pos, &m.sb_neg]
}

/// On a genuine-like pair the similarity map S+ explains the Accept and must sit on the
/// quadrant. Each method is judged at its own resolution: an occluder reaches `margin`
/// pixels past the quadrant's edge (CorrRISE: the 30-px square; RISE: one 16-px grid cell;
/// LIME: none, its superpixels follow the quadrant's colour edge).
#[test]
fn perturbation_methods_find_the_only_quadrant_the_model_sees() {
    let model = Quadrant::new();
    let a = quad_image(20);
    // Genuine-like partner: the same image with fresh noise.
    let b: Vec<f32> = a.iter().zip(noise(21, 3 * S * S)).map(|(v, n)| v + 0.05 * n).collect();
    let pair = FacePair { a: &a, b: &b };
    let explainers: Vec<(Box<dyn Explainer>, usize)> = vec![
        (Box::new(CorrRise::default()), 30),
        (Box::new(Rise::new(RiseConfig { masks: 1000, ..Default::default() })), 16),
        (Box::new(Lime::default()), 0),
    ];
    for (explainer, margin) in explainers {
        let e = explainer.explain(&model, pair, 0.3).unwrap();
        check_valid(&e);
        assert!(e.score > 0.9, "toy pair should be genuine-like, cos {}", e.score);
        let m = &e.maps;
        let (bare, grown) = (share(&similarity(m), 0), share(&similarity(m), margin));
        let all_grown = share(&all_four(m), margin);
        eprintln!("{}: S+ in quadrant {bare:.3}, within +{margin} px {grown:.3}; S+ and S- within +{margin} px {all_grown:.3}", e.method);
        assert!(grown > 0.9, "{}: only {grown:.3} of S+ within {margin} px of the quadrant", e.method);
        assert!(bare > 0.7, "{}: only {bare:.3} of S+ in the quadrant", e.method);
        if e.method == "corrrise" {
            // A fixed number of squares per mask: a square on an irrelevant pixel is one
            // fewer on the quadrant, so irrelevant pixels correlate weakly *negatively*.
            // S- is that artefact and lies outside the quadrant (documented in corrrise.rs).
            assert!(share(&[&m.sa_neg, &m.sb_neg], 0) < 0.05);
        } else {
            assert!(all_grown > 0.8, "{}: only {all_grown:.3} of S+ and S- near the quadrant", e.method);
        }
    }
    // Random maps spread evenly: the quadrant holds its area, a quarter.
    let e = RandomMaps::default().explain(&model, pair, 0.3).unwrap();
    let (bare, grown) = (share(&similarity(&e.maps), 0), share(&similarity(&e.maps), 30));
    assert!((bare - 0.25).abs() < 0.03 && grown < 0.65, "random: {bare:.3} / {grown:.3}");
}
