//! Word embedding lookup.

use super::Real;

/// `ids [n_tok]` → rows of `table [V, D_w]` → `[n_tok, D_w]`.
pub fn forward<T: Real>(ids: &[u32], table: &[T], dw: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(ids.len() * dw);
    for &id in ids {
        let id = id as usize;
        out.extend_from_slice(&table[id * dw..(id + 1) * dw]);
    }
    out
}

/// Backward of [`forward`]: scatter-adds `dx [n_tok, D_w]` into the used rows of `dtable [V, D_w]`.
pub fn backward<T: Real>(dx: &[T], ids: &[u32], dtable: &mut [T], dw: usize) {
    for (row, &id) in dx.chunks_exact(dw).zip(ids) {
        let id = id as usize;
        super::add_into(&mut dtable[id * dw..(id + 1) * dw], row);
    }
}
