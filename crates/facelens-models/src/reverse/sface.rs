//! Lowering a candle SFace into a [`Net`].

use candle_core::Result;

use super::tensor_values as values;
use super::{BufShape, Net, Op};
use crate::sface::SFace;

impl Net {
    pub fn from_sface(m: &SFace) -> Result<Net> {
        let s = m.config.input_size;
        let mut net = Net::new(BufShape { c: 3, h: s, w: s });
        let mut x = 0;
        for l in &m.layers {
            x = net.push_conv(&l.conv, x)?;
            x = net.push_bn(&l.bn, x)?;
            x = net.push(Op::PRelu { input: x, slope: values(l.prelu.weight())? });
        }
        x = net.push_bn(&m.bn1, x)?;
        // pre_fc1 then the eval-mode BatchNorm1d `fc1` fold into one dense layer.
        net.push_linear_bn(&m.pre_fc1, &m.fc1, x)?;
        Ok(net)
    }
}
