//! Pure document analysis: no I/O, no shared state, so every function here is
//! deterministic and unit-testable and can run on a blocking thread.

pub mod fingerprint;
pub mod keyphrases;
pub mod language;
pub mod readability;
pub mod stopwords;
pub mod text;

use fingerprint::Fingerprint;
use keyphrases::Keyphrase;
use language::Language;
use readability::Readability;

#[derive(Debug, Clone)]
pub struct Analysis {
    pub language: Language,
    pub readability: Readability,
    pub reading_time_seconds: u32,
    pub keyphrases: Vec<Keyphrase>,
    pub fingerprint: Fingerprint,
}

/// Analyzes one document.
///
/// The title takes part in language detection and keyphrases (it is the
/// densest statement of the topic) but not in readability, reading time or
/// the fingerprint: a re-titled copy is still a copy, and headlines are not
/// prose.
pub fn analyze(title: Option<&str>, text: &str) -> Analysis {
    let titled;
    let with_title = match title.map(str::trim).filter(|t| !t.is_empty()) {
        // A blank line makes the title its own sentence/phrase boundary.
        Some(t) => {
            titled = format!("{t}\n\n{text}");
            titled.as_str()
        }
        None => text,
    };
    let language = language::detect(with_title);
    let readability = readability::readability(text);
    let reading_time_seconds = readability::reading_time_seconds(readability.words);
    let keyphrases = keyphrases::extract(with_title, language.code, keyphrases::MAX_KEYPHRASES);
    let fingerprint = fingerprint::fingerprint(text);
    Analysis {
        language,
        readability,
        reading_time_seconds,
        keyphrases,
        fingerprint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_feeds_keyphrases_but_not_fingerprint() {
        let text = "Solar panels on every school roof would cut energy bills for the district.";
        let plain = analyze(None, text);
        let titled = analyze(Some("Rooftop photovoltaics"), text);
        assert_eq!(plain.fingerprint, titled.fingerprint);
        assert_eq!(plain.readability, titled.readability);
        assert!(titled
            .keyphrases
            .iter()
            .any(|k| k.phrase == "rooftop photovoltaics"));
        assert!(!plain
            .keyphrases
            .iter()
            .any(|k| k.phrase == "rooftop photovoltaics"));
        assert_eq!(plain.language.code, "en");
        assert_eq!(plain.reading_time_seconds, 4);
    }
}
