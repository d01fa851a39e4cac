//! The vocabulary, loaded from the official JSON files
//! (`vocab/f30k_precomp_vocab.json`, `vocab/coco_precomp_vocab.json`):
//! `{"idx2word": {"0": "<pad>", ...}, "word2idx": {"<pad>": 0, ...}, "idx": N}`.
//! The ids cannot be rebuilt from the captions (spec §2.3): always load the JSON.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::error::{Result, SgrafError};

/// Padding id (`<pad>`).
pub const PAD: u32 = 0;
/// Start-of-caption id (`<start>`).
pub const START: u32 = 1;
/// End-of-caption id (`<end>`).
pub const END: u32 = 2;
/// Out-of-vocabulary id (`<unk>`).
pub const UNK: u32 = 3;

/// The special words at ids 0..=3.
pub const SPECIALS: [&str; 4] = ["<pad>", "<start>", "<end>", "<unk>"];

/// Word ↔ id maps; ids are `0..len()`.
#[derive(Debug, Clone)]
pub struct Vocab {
    idx2word: Vec<String>,          // [V]
    word2idx: HashMap<String, u32>, // V entries
}

#[derive(Deserialize)]
struct RawVocab {
    idx2word: BTreeMap<String, String>,
    word2idx: HashMap<String, i64>,
    idx: i64,
}

impl Vocab {
    /// Parses the official JSON layout (`source` is "<string>" in messages).
    pub fn from_json_str(json: &str) -> Result<Self> {
        Self::from_json_named(json, "<string>")
    }

    /// Parses the official JSON layout; `source` names it in error messages.
    pub fn from_json_named(json: &str, source: &str) -> Result<Self> {
        let err = |msg: String| SgrafError::Vocab { path: source.to_string(), msg };
        // serde_json's message ends with "at line L column C".
        let raw: RawVocab = serde_json::from_str(json).map_err(|e| {
            err(format!(
                "not a valid vocabulary JSON ({e}); expected {{\"idx2word\": {{...}}, \"word2idx\": {{...}}, \"idx\": N}}"
            ))
        })?;

        let n = raw.idx2word.len();
        let mut idx2word: Vec<Option<String>> = vec![None; n];
        for (key, word) in raw.idx2word {
            let id: usize = key.parse().map_err(|_| err(format!("idx2word key {key:?} is not a decimal id")))?;
            if id >= n {
                return Err(err(format!("idx2word has {n} entries but contains id {id}; ids must be 0..{n}")));
            }
            if idx2word[id].replace(word).is_some() {
                return Err(err(format!("idx2word lists id {id} twice (as {key:?})")));
            }
        }
        // Every slot is filled: n distinct ids in 0..n.
        let idx2word: Vec<String> = idx2word.into_iter().map(|w| w.unwrap_or_default()).collect();

        if raw.idx != n as i64 {
            return Err(err(format!("\"idx\" is {} but idx2word has {n} entries", raw.idx)));
        }
        if raw.word2idx.len() != n {
            return Err(err(format!("word2idx has {} entries but idx2word has {n}", raw.word2idx.len())));
        }
        let mut word2idx = HashMap::with_capacity(n);
        for (id, word) in idx2word.iter().enumerate() {
            match raw.word2idx.get(word) {
                Some(&j) if j == id as i64 => {}
                Some(&j) => {
                    return Err(err(format!(
                        "inconsistent maps: idx2word[{id}] = {word:?} but word2idx[{word:?}] = {j}"
                    )))
                }
                None => {
                    return Err(err(format!("inconsistent maps: idx2word[{id}] = {word:?} is missing from word2idx")))
                }
            }
            word2idx.insert(word.clone(), id as u32);
        }
        for (id, special) in SPECIALS.iter().enumerate() {
            match idx2word.get(id) {
                Some(w) if w == special => {}
                Some(w) => {
                    return Err(err(format!(
                        "id {id} must be {special:?} (ids 0..3 are <pad>, <start>, <end>, <unk>), found {w:?}"
                    )))
                }
                None => return Err(err(format!("only {n} entries; ids 0..3 must be <pad>, <start>, <end>, <unk>"))),
            }
        }
        Ok(Vocab { idx2word, word2idx })
    }

    /// Loads a vocabulary JSON file.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| SgrafError::io(path, e))?;
        let text = String::from_utf8(bytes).map_err(|e| SgrafError::Vocab {
            path: path.display().to_string(),
            msg: format!("not UTF-8 (invalid byte at offset {})", e.utf8_error().valid_up_to()),
        })?;
        Self::from_json_named(&text, &path.display().to_string())
    }

    /// Number of words, specials included (= embedding rows).
    pub fn len(&self) -> usize {
        self.idx2word.len()
    }

    /// Never true for a loaded vocabulary (it holds at least the 4 specials).
    pub fn is_empty(&self) -> bool {
        self.idx2word.is_empty()
    }

    /// The id of `word`, or [`UNK`] (3) when it is not in the vocabulary.
    pub fn id(&self, word: &str) -> u32 {
        self.word2idx.get(word).copied().unwrap_or(UNK)
    }

    /// Whether `word` is in the vocabulary.
    pub fn contains(&self, word: &str) -> bool {
        self.word2idx.contains_key(word)
    }

    /// The word of `id`, or `None` when `id >= len()`.
    pub fn word(&self, id: u32) -> Option<&str> {
        self.idx2word.get(id as usize).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"{"idx2word": {"0": "<pad>", "1": "<start>", "2": "<end>", "3": "<unk>", "4": "a", "5": "dog", "6": "."},
        "word2idx": {"<pad>": 0, "<start>": 1, "<end>": 2, "<unk>": 3, "a": 4, "dog": 5, ".": 6}, "idx": 7}"#;

    fn err_of(json: &str) -> String {
        Vocab::from_json_named(json, "vocab.json").unwrap_err().to_string()
    }

    #[test]
    fn loads_official_layout() {
        let v = Vocab::from_json_str(SMALL).unwrap();
        assert_eq!(v.len(), 7);
        assert_eq!(v.id("dog"), 5);
        assert_eq!(v.id("."), 6);
        assert_eq!(v.id("cat"), UNK, "OOV word must map to <unk>");
        assert_eq!(v.id("<start>"), START);
        assert_eq!(v.word(4), Some("a"));
        assert_eq!(v.word(7), None);
        assert!(v.contains("a") && !v.contains("cat"));
    }

    #[test]
    fn parse_error_names_path_and_position() {
        let e = err_of("{\"idx2word\": {\"0\": \"<pad>\",\n  \"1\" \"<start>\"}}");
        assert!(e.contains("vocab.json") && e.contains("line 2") && e.contains("column"), "{e}");
        let e = err_of("{\"idx2word\": {}, \"word2idx\": {}}");
        assert!(e.contains("idx"), "{e}");
    }

    #[test]
    fn inconsistencies_are_errors() {
        let bad_id = SMALL.replace("\"dog\": 5", "\"dog\": 6");
        let e = err_of(&bad_id);
        assert!(e.contains("idx2word[5]") && e.contains("word2idx"), "{e}");

        let bad_count = SMALL.replace("\"idx\": 7", "\"idx\": 8");
        let e = err_of(&bad_count);
        assert!(e.contains("\"idx\" is 8") && e.contains("7 entries"), "{e}");

        let gap = SMALL.replace("\"6\": \".\"", "\"9\": \".\"");
        let e = err_of(&gap);
        assert!(e.contains("id 9"), "{e}");

        let missing = SMALL.replace(", \".\": 6", "");
        let e = err_of(&missing);
        assert!(e.contains("word2idx has 6") && e.contains("7"), "{e}");

        let not_decimal = SMALL.replace("\"4\": \"a\"", "\"x\": \"a\"");
        let e = err_of(&not_decimal);
        assert!(e.contains("\"x\""), "{e}");
    }

    #[test]
    fn specials_must_come_first() {
        let swapped = SMALL
            .replace("\"2\": \"<end>\", \"3\": \"<unk>\"", "\"2\": \"<unk>\", \"3\": \"<end>\"")
            .replace("\"<end>\": 2, \"<unk>\": 3", "\"<end>\": 3, \"<unk>\": 2");
        let e = err_of(&swapped);
        assert!(e.contains("id 2") && e.contains("<end>") && e.contains("<unk>"), "{e}");

        let tiny = r#"{"idx2word": {"0": "<pad>", "1": "<start>"}, "word2idx": {"<pad>": 0, "<start>": 1}, "idx": 2}"#;
        let e = err_of(tiny);
        assert!(e.contains("only 2 entries"), "{e}");
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn load_from_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f30k_precomp_vocab.json");
        std::fs::write(&path, SMALL).unwrap();
        assert_eq!(Vocab::load(&path).unwrap().len(), 7);
        let e = Vocab::load(dir.path().join("nope.json")).unwrap_err().to_string();
        assert!(e.contains("nope.json"), "{e}");
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn golden_cli_vocab_loads() {
        // The shared golden case ships a vocabulary in the official layout.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/golden/small_float32_cli/SGR/data/vocab.json");
        assert!(path.is_file(), "golden vocabulary missing at {} (../shared beside the repo)", path.display());
        let v = Vocab::load(&path).unwrap();
        assert_eq!(v.len(), 50, "golden vocab size");
        assert_eq!(v.word(4), Some("w4"));
    }
}
