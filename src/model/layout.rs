//! How a tile of captions is packed for pair scoring, shared by both backends.
//!
//! Caption `c`'s word `j` is row `word_off[c] + j` of the packed word tensor
//! `t [n_words, E]`; its graph nodes are rows `node_off[c] ..= node_off[c] + L_c`
//! of `nodes [n_img, n_nodes, S]`, the global node first (`node_off[c]`),
//! then the words in order. `node_off[c] = word_off[c] + c`.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileLayout {
    pub lengths: Vec<usize>,  // [n_cap], tokens incl. <start>/<end>
    pub word_off: Vec<usize>, // [n_cap + 1]
    pub node_off: Vec<usize>, // [n_cap + 1]
}

impl TileLayout {
    pub fn new(lengths: &[usize]) -> TileLayout {
        let mut word_off = vec![0];
        let mut node_off = vec![0];
        for &l in lengths {
            word_off.push(word_off.last().copied().unwrap_or(0) + l);
            node_off.push(node_off.last().copied().unwrap_or(0) + l + 1);
        }
        TileLayout { lengths: lengths.to_vec(), word_off, node_off }
    }
    pub fn n_cap(&self) -> usize {
        self.lengths.len()
    }
    pub fn n_words(&self) -> usize {
        *self.word_off.last().unwrap_or(&0)
    }
    pub fn n_nodes(&self) -> usize {
        *self.node_off.last().unwrap_or(&0)
    }
    /// Packed word rows of caption `c`.
    pub fn words(&self, c: usize) -> std::ops::Range<usize> {
        self.word_off[c]..self.word_off[c + 1]
    }
    /// Node rows of caption `c` (global node first).
    pub fn nodes(&self, c: usize) -> std::ops::Range<usize> {
        self.node_off[c]..self.node_off[c + 1]
    }
    /// Caption of every packed word row, `[n_words]`.
    pub fn caption_of_word(&self) -> Vec<u32> {
        (0..self.n_cap()).flat_map(|c| self.words(c).map(move |_| c as u32)).collect()
    }

    /// Packs `cap_emb [n_cap, l_max, E]` into `t [n_words, E]`.
    pub fn pack_words<T: Copy>(&self, cap_emb: &[T], l_max: usize, e: usize) -> Vec<T> {
        let mut t = Vec::with_capacity(self.n_words() * e);
        for (c, &l) in self.lengths.iter().enumerate() {
            t.extend_from_slice(&cap_emb[c * l_max * e..(c * l_max + l) * e]);
        }
        t
    }
}
