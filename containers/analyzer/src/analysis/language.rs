//! Stopword-profile language detection over seven European languages.
//!
//! Function words make up 40–50% of running text in all supported languages
//! and differ between them, so counting them is both cheap and accurate for
//! anything longer than a sentence; a character n-gram model would need
//! trained profiles for little gain at the document sizes this service sees.

use serde::Serialize;

use super::stopwords::{membership, LANGS};
use super::text::{lower_into, words};

/// Code reported when there is too little evidence to decide.
pub const UNDETERMINED: &str = "und";

/// Fewer stopword hits than this for the winner means "und": a title or a
/// list of names carries no reliable signal.
const MIN_WINNER_HITS: f64 = 2.0;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Language {
    pub code: &'static str,
    pub confidence: f64,
}

/// Detects the dominant language of `text`.
///
/// Every stopword adds `1/k` to each of the `k` languages listing it, so
/// shared words such as "de" or "in" cannot outvote distinctive ones like
/// "und" or "the". Confidence is the winner's share against the runner-up
/// (the only plausible confusion; 0.5 is a tie), damped by the amount of
/// evidence (`1 - e^(-score/3)`), so a two-word hit is never near-certain.
pub fn detect(text: &str) -> Language {
    let mut scores = [0.0f64; LANGS.len()];
    let mut buf = String::new();
    for word in words(text) {
        let mask = membership(lower_into(&mut buf, word)) & ((1u8 << LANGS.len()) - 1);
        if mask == 0 {
            continue;
        }
        let share = 1.0 / f64::from(mask.count_ones());
        for (i, score) in scores.iter_mut().enumerate() {
            if mask & (1 << i) != 0 {
                *score += share;
            }
        }
    }

    let (best, best_score) = scores
        .iter()
        .copied()
        .enumerate()
        .fold((0, 0.0), |acc, (i, s)| if s > acc.1 { (i, s) } else { acc });
    if best_score < MIN_WINNER_HITS {
        return Language {
            code: UNDETERMINED,
            confidence: 0.0,
        };
    }
    let runner_up = scores
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != best)
        .map(|(_, &s)| s)
        .fold(0.0, f64::max);
    let contrast = best_score / (best_score + runner_up);
    let evidence = 1.0 - (-best_score / 3.0).exp();
    Language {
        code: LANGS[best].0,
        confidence: round3(contrast * evidence),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> &'static str {
        detect(text).code
    }

    #[test]
    fn detects_clear_samples() {
        let en = "The committee published its report on Monday, and the findings were clear: \
                  most of the city's bridges need repairs that should have been done years ago.";
        let de = "Der Ausschuss hat seinen Bericht am Montag veröffentlicht, und die Ergebnisse \
                  sind eindeutig: die meisten Brücken der Stadt müssen dringend repariert werden.";
        let fr = "Le comité a publié son rapport lundi, et les conclusions sont claires : la \
                  plupart des ponts de la ville ont besoin de réparations depuis des années.";
        let es = "El comité publicó su informe el lunes y las conclusiones son claras: la mayoría \
                  de los puentes de la ciudad necesitan reparaciones desde hace años.";
        let it = "Il comitato ha pubblicato il suo rapporto lunedì e le conclusioni sono chiare: \
                  la maggior parte dei ponti della città ha bisogno di riparazioni.";
        let pt = "O comitê publicou o seu relatório na segunda-feira e as conclusões são claras: \
                  a maioria das pontes da cidade precisa de reparos há muitos anos.";
        let nl = "Het comité heeft maandag zijn rapport gepubliceerd en de conclusies zijn \
                  duidelijk: de meeste bruggen van de stad hebben al jaren reparaties nodig.";
        assert_eq!(code(en), "en");
        assert_eq!(code(de), "de");
        assert_eq!(code(fr), "fr");
        assert_eq!(code(es), "es");
        assert_eq!(code(it), "it");
        assert_eq!(code(pt), "pt");
        assert_eq!(code(nl), "nl");
        for sample in [en, de, fr] {
            let lang = detect(sample);
            assert!(lang.confidence > 0.5, "{lang:?}");
            assert!(lang.confidence <= 1.0, "{lang:?}");
        }
    }

    #[test]
    fn too_little_text_is_undetermined() {
        assert_eq!(
            detect("Hello"),
            Language {
                code: "und",
                confidence: 0.0
            }
        );
        assert_eq!(code("Kubernetes Prometheus Grafana"), "und");
        assert_eq!(code("12345 !!!"), "und");
    }
}
