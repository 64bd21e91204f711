//! Lowering a candle IResNet into a [`Net`].

use candle_core::Result;

use super::tensor_values as values;
use super::{BufShape, ConvGeom, Net, Op};
use crate::iresnet::{IBasicBlock, IResNet, Shortcut};
use crate::mobilefacenet::ConvLayer;

impl Net {
    pub fn from_iresnet(m: &IResNet) -> Result<Net> {
        let s = m.config.input_size;
        let mut net = Net::new(BufShape { c: 3, h: s, w: s });
        let x = conv(&mut net, &m.conv1, 0)?;
        let x = net.push_bn(&m.bn1, x)?;
        let mut x = net.push(Op::PRelu { input: x, slope: values(m.prelu.weight())? });
        for block in m.stages.iter().flatten() {
            x = basic_block(&mut net, block, x)?;
        }
        let x = net.push_bn(&m.bn2, x)?;
        // fc then the eval-mode BatchNorm1d `features` fold into one dense layer.
        net.push_linear_bn(&m.fc, &m.features, x)?;
        Ok(net)
    }
}

fn conv(net: &mut Net, c: &ConvLayer, x: usize) -> Result<usize> {
    net.push_conv(c, x)
}

fn basic_block(net: &mut Net, b: &IBasicBlock, x: usize) -> Result<usize> {
    let y = net.push_bn(&b.bn1, x)?;
    let y = conv(net, &b.conv1, y)?;
    let y = net.push_bn(&b.bn2, y)?;
    let y = net.push(Op::PRelu { input: y, slope: values(b.prelu.weight())? });
    let y = conv(net, &b.conv2, y)?;
    let y = net.push_bn(&b.bn3, y)?;
    let skip = match &b.shortcut {
        Shortcut::Identity => x,
        Shortcut::Subsample(stride) => {
            // Keep every stride-th pixel: a depthwise 1x1 convolution with unit weights.
            let shape = net.shapes[x];
            let geom = ConvGeom { cin: shape.c, cout: shape.c, k: 1, stride: *stride, pad: 0, groups: shape.c, h: shape.h, w: shape.w };
            net.push(Op::Conv { input: x, geom, weight: vec![1.0; shape.c], bias: vec![0.0; shape.c] })
        }
        Shortcut::Projection(c, bn) => {
            let s = conv(net, c, x)?;
            net.push_bn(bn, s)?
        }
    };
    Ok(net.push(Op::Add { a: y, b: skip }))
}
