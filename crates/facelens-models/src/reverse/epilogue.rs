//! Per-channel elementwise work that follows a convolution: its bias, then the BatchNorm
//! (affine), PReLU and residual additions that read nothing but the convolution's output.
//!
//! In a forward-only pass these run on each block of output while it is still in cache
//! instead of as separate passes over whole activations (the "fused epilogue" of inference
//! engines). Every step is the same float operation, in the same order, as the graph op it
//! replaces, so fusing changes no value: a fused forward equals the op-by-op tape bit for bit.

/// One elementwise op applied per channel.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    /// `v * scale[c] + shift[c]` (BatchNorm in eval mode).
    Affine { scale: &'a [f32], shift: &'a [f32] },
    /// `v` where `v >= 0`, else `slope[c] * v`.
    PRelu { slope: &'a [f32] },
    /// `v + other`, `other` a buffer of the same shape (a residual branch).
    Add { other: &'a [f32] },
    /// Copies the values as they are at this point into a buffer of the output's shape (a
    /// PReLU's input, which its reverse pass reads), leaving them unchanged.
    Save { to: SavePtr },
}

/// Where a [`Step::Save`] writes: the start of a `[C][plane]` buffer that outlives the pass.
/// Every task of a pass writes the positions of its own tile only.
#[derive(Debug, Clone, Copy)]
pub struct SavePtr(pub *mut f32);
// SAFETY: tasks write disjoint tiles of one buffer that outlives them (see `Step::apply`).
unsafe impl Send for SavePtr {}
unsafe impl Sync for SavePtr {}

/// The bias of a convolution and the steps fused after it, in graph order.
#[derive(Debug, Clone)]
pub struct Epilogue<'a> {
    pub bias: &'a [f32],
    pub steps: Vec<Step<'a>>,
}

impl<'a> Epilogue<'a> {
    pub fn bias(bias: &'a [f32]) -> Self {
        Self { bias, steps: Vec::new() }
    }

    /// Applies the epilogue to `vals`: the values of channel `c` at positions
    /// `start..start + vals.len()` of that channel's plane, which holds `plane` values
    /// (`plane` locates the same positions in an [`Step::Add`] operand).
    #[inline(always)]
    pub fn apply(&self, c: usize, plane: usize, start: usize, vals: &mut [f32]) {
        let bv = self.bias[c];
        vals.iter_mut().for_each(|v| *v += bv);
        for step in &self.steps {
            step.apply(c, plane, start, vals);
        }
    }
}

impl Step<'_> {
    #[inline(always)]
    pub fn apply(&self, c: usize, plane: usize, start: usize, vals: &mut [f32]) {
        match *self {
            Step::Affine { scale, shift } => {
                let (s, t) = (scale[c], shift[c]);
                vals.iter_mut().for_each(|v| *v = *v * s + t);
            }
            Step::PRelu { slope } => {
                let s = slope[c];
                vals.iter_mut().for_each(|v| *v = if *v < 0.0 { *v * s } else { *v });
            }
            Step::Add { other } => {
                let o = &other[c * plane + start..c * plane + start + vals.len()];
                vals.iter_mut().zip(o).for_each(|(v, o)| *v += *o);
            }
            // SAFETY: the buffer holds `C * plane` values and the caller's tile (channel `c`,
            // positions `start..start + len`) is written by this task alone.
            Step::Save { to } => unsafe { std::ptr::copy_nonoverlapping(vals.as_ptr(), to.0.add(c * plane + start), vals.len()) },
        }
    }
}
