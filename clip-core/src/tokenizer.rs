//! TEMPORARY stub (replaced by the tokenizer branch).
#[derive(Debug, thiserror::Error)]
#[error("tokenizer not yet available")]
pub struct TokenizeError;
pub struct Tokenizer;
impl Tokenizer {
    pub fn new() -> Result<Self, TokenizeError> {
        Err(TokenizeError)
    }
    pub fn tokenize<S: AsRef<str>>(
        &self,
        _t: &[S],
        _tr: bool,
    ) -> Result<tch::Tensor, TokenizeError> {
        Err(TokenizeError)
    }
}
