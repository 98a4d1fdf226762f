//! Words of free text: what a text term matches.

/// The words of `text`: its longest runs of letters and digits (Unicode),
/// lowercased. `"alice.smith@acme.example"` has the words `alice`, `smith`,
/// `acme` and `example`; a text term `alice.smith` matches it, as the two
/// words one after the other.
pub fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether `words` appear one after the other among `text`'s tokens.
pub fn contains_phrase(text: &str, words: &[String]) -> bool {
    if words.is_empty() {
        return false;
    }
    let have = tokens(text);
    have.windows(words.len()).any(|window| window == words)
}
