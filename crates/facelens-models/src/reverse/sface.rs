//! Lowering a candle SFace into a [`Net`].

use candle_core::Result;

use super::tensor_values as values;
use super::{BufShape, Net, Op};
use crate::iresnet::FrozenBatchNorm;
use crate::sface::SFace;

impl Net {
    pub fn from_sface(m: &SFace) -> Result<Net> {
        let s = m.config.input_size;
        let mut net = Net::new(BufShape { c: 3, h: s, w: s });
        let mut x = 0;
        for l in &m.layers {
            x = net.push_conv(&l.conv, x)?;
            x = affine(&mut net, &l.bn, x)?;
            x = net.push(Op::PRelu { input: x, slope: values(l.prelu.weight())? });
        }
        x = affine(&mut net, &m.bn1, x)?;
        // pre_fc1 then the eval-mode BatchNorm1d `fc1` fold into one dense layer.
        net.push_dense_affine(&m.pre_fc1, &values(&m.fc1.scale)?, &values(&m.fc1.shift)?, x)?;
        Ok(net)
    }
}

fn affine(net: &mut Net, bn: &FrozenBatchNorm, x: usize) -> Result<usize> {
    Ok(net.push(Op::Affine { input: x, scale: values(&bn.scale)?, shift: values(&bn.shift)? }))
}
