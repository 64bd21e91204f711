//! Lowering a candle MobileFaceNet into a [`Net`].

use candle_core::{Result, Tensor};

use super::tensor_values as values;
use super::{BufShape, Net, Op};
use crate::mobilefacenet::{ConvBlock, ConvLayer, DepthWise, MobileFaceNet, Stage};

impl Net {
    pub fn from_mobilefacenet(m: &MobileFaceNet) -> Result<Net> {
        let s = m.config.input_size;
        let mut net = Net::new(BufShape { c: 3, h: s, w: s });
        let mut x = 0;
        for stage in &m.stages {
            x = match stage {
                Stage::Conv(b) => block(&mut net, b, x)?,
                Stage::Unit(u) => unit(&mut net, u, x)?,
                Stage::Residual(units) => units.iter().try_fold(x, |x, u| unit(&mut net, u, x))?,
            };
        }
        x = block(&mut net, &m.conv_sep, x)?;
        x = block(&mut net, &m.conv_head, x)?;
        // fc followed by BatchNorm1d (eval) folds into one dense layer.
        let w = values(m.fc.weight())?;
        let b = match m.fc.bias() {
            Some(b) => values(b)?,
            None => vec![0.0; m.config.num_features],
        };
        let (mean, var) = (values(m.features.running_mean())?, values(m.features.running_var())?);
        let (gamma, beta) = match m.features.weight_and_bias() {
            Some((g, b)) => (values(g)?, values(b)?),
            None => (vec![1.0; mean.len()], vec![0.0; mean.len()]),
        };
        let eps = m.features.eps();
        let out = m.config.num_features;
        let d = w.len() / out;
        let mut weight = vec![0f32; w.len()];
        let mut bias = vec![0f32; out];
        for o in 0..out {
            let sc = gamma[o] / (var[o] + eps as f32).sqrt();
            for j in 0..d {
                weight[o * d + j] = w[o * d + j] * sc;
            }
            bias[o] = (b[o] - mean[o]) * sc + beta[o];
        }
        net.push(Op::Dense { input: x, weight, bias, out });
        Ok(net)
    }
}

fn conv(net: &mut Net, c: &ConvLayer, x: usize) -> Result<usize> {
    net.push_conv(c, x)
}

fn block(net: &mut Net, b: &ConvBlock, x: usize) -> Result<usize> {
    let y = conv(net, &b.conv, x)?;
    let slope = values(&prelu_weight(&b.prelu)?)?;
    Ok(net.push(Op::PRelu { input: y, slope }))
}

fn unit(net: &mut Net, u: &DepthWise, x: usize) -> Result<usize> {
    let y = block(net, &u.expand, x)?;
    let y = block(net, &u.depthwise, y)?;
    let y = conv(net, &u.project, y)?;
    Ok(if u.residual { net.push(Op::Add { a: y, b: x }) } else { y })
}

fn prelu_weight(p: &candle_nn::PReLU) -> Result<Tensor> {
    Ok(p.weight().clone())
}
