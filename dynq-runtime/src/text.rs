//! Text to token ids with a model's embedded `tokenizer.json` (feature `text`, on by default).
//!
//! Generated encoder models with a tokenizer call this from their text methods
//! (`embed_text`, `classify_text` and their batch forms). It tokenizes as the model was
//! trained: special tokens added, padding off whatever the file says (padding ids read as text
//! would change the result), and truncation chosen by the caller ([`Truncate`]), never silent.
//!
//! ```
//! use dynq_runtime::text::{Tokenizer, Truncate};
//! # let json = include_str!("../../models/minilm/tokenizer.json");
//! let t = Tokenizer::new(json, 8).unwrap();
//! let ids = t.encode("Rust is fast.", Truncate::Refuse).unwrap();
//! assert_eq!(ids.ids.first(), Some(&101)); // [CLS]
//! assert!(!ids.truncated);
//! let long = "word ".repeat(20);
//! assert!(t.encode(&long, Truncate::Refuse).is_err());
//! assert_eq!(t.encode(&long, Truncate::AtMax).unwrap().ids.len(), 8);
//! assert_eq!(t.encode(&long, Truncate::At(5)).unwrap().ids.len(), 5);
//! ```

use std::sync::{Arc, Mutex};

use crate::Error;

/// What to do with a text longer than a sequence may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Truncate {
    /// Refuse it: [`Error::TextTooLong`].
    Refuse,
    /// Cut it at the model's `MAX_SEQ_LEN` tokens (special tokens kept).
    AtMax,
    /// Cut it at this many tokens (special tokens kept), at most the model's `MAX_SEQ_LEN`:
    /// for instance the `max_seq_length` a sentence-transformers model was trained with.
    At(usize),
}

/// Token ids of one text, from [`Tokenizer::encode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextIds {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// Token type ids, one per id.
    pub type_ids: Vec<u32>,
    /// Whether the text was longer than allowed and cut.
    pub truncated: bool,
}

/// A model's tokenizer: `tokenizer.json` loaded once, without padding.
pub struct Tokenizer {
    /// Truncates at `max_len`.
    at_max: tokenizers::Tokenizer,
    max_len: usize,
    /// Copies that truncate at shorter lengths, made on first use of [`Truncate::At`].
    shorter: Mutex<Vec<(usize, Arc<tokenizers::Tokenizer>)>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

/// `t` without padding, truncating at `max_len` tokens (special tokens included).
fn truncating(
    mut t: tokenizers::Tokenizer,
    max_len: usize,
) -> Result<tokenizers::Tokenizer, Error> {
    t.with_padding(None);
    t.with_truncation(Some(tokenizers::TruncationParams {
        max_length: max_len,
        ..Default::default()
    }))
    .map_err(|e| Error::Tokenizer(format!("cannot truncate at {max_len} tokens: {e}")))?;
    Ok(t)
}

impl Tokenizer {
    /// Loads `tokenizer.json` text for a model of at most `max_len` tokens per sequence.
    pub fn new(json: &str, max_len: usize) -> Result<Self, Error> {
        let t: tokenizers::Tokenizer = json
            .parse()
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json: {e}")))?;
        Ok(Tokenizer {
            at_max: truncating(t, max_len)?,
            max_len,
            shorter: Mutex::new(Vec::new()),
        })
    }

    /// The longest sequence it produces.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Token ids of `text` with the special tokens, truncated or refused as `truncate` says.
    pub fn encode(&self, text: &str, truncate: Truncate) -> Result<TextIds, Error> {
        self.encode_input(text.into(), text.chars().count(), truncate)
    }

    /// Token ids of the pair `(first, second)` as one sequence (a cross-encoder's query and
    /// passage): the tokenizer's pair template (`[CLS] a [SEP] b [SEP]` for BERT) and its
    /// token types, the longer text cut first when the pair is too long.
    pub fn encode_pair(
        &self,
        first: &str,
        second: &str,
        truncate: Truncate,
    ) -> Result<TextIds, Error> {
        let chars = first.chars().count() + second.chars().count();
        self.encode_input((first, second).into(), chars, truncate)
    }

    fn encode_input(
        &self,
        input: tokenizers::EncodeInput<'_>,
        chars: usize,
        truncate: Truncate,
    ) -> Result<TextIds, Error> {
        let limit = match truncate {
            Truncate::Refuse | Truncate::AtMax => self.max_len,
            Truncate::At(n) if n > 0 && n <= self.max_len => n,
            Truncate::At(n) => {
                return Err(Error::Tokenizer(format!(
                    "Truncate::At({n}): expected 1 to {} tokens (the model's max_seq_len)",
                    self.max_len
                )))
            }
        };
        let shorter;
        let t = if limit == self.max_len {
            &self.at_max
        } else {
            let mut cache = self.shorter.lock().unwrap_or_else(|p| p.into_inner());
            shorter = match cache.iter().find(|(n, _)| *n == limit) {
                Some((_, t)) => Arc::clone(t),
                None => {
                    let t = Arc::new(truncating(self.at_max.clone(), limit)?);
                    cache.push((limit, Arc::clone(&t)));
                    t
                }
            };
            &*shorter
        };
        let e = t
            .encode(input, true)
            .map_err(|e| Error::Tokenizer(format!("cannot tokenize: {e}")))?;
        let truncated = !e.get_overflowing().is_empty();
        if truncated && truncate == Truncate::Refuse {
            return Err(Error::TextTooLong {
                max: self.max_len,
                chars,
            });
        }
        Ok(TextIds {
            ids: e.get_ids().to_vec(),
            type_ids: e.get_type_ids().to_vec(),
            truncated,
        })
    }
}
