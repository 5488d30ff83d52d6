//! Stopword lists shared by language detection and keyphrase extraction.
//!
//! The lists are deliberately short and limited to high-frequency function
//! words: for detection, function words are the most language-specific signal
//! per token, and for RAKE they are the phrase delimiters. Content words are
//! kept out so they can become keyphrases.

use std::collections::HashMap;
use std::sync::LazyLock;

#[rustfmt::skip]
pub const EN: &[&str] = &[
    "a", "about", "after", "all", "also", "an", "and", "any", "are", "as", "at", "be", "because",
    "been", "but", "by", "can", "could", "did", "do", "does", "for", "from", "had", "has", "have",
    "he", "her", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "just", "me",
    "more", "most", "my", "no", "not", "of", "on", "only", "or", "other", "our", "out", "over",
    "she", "should", "so", "some", "such", "than", "that", "the", "their", "them", "then",
    "there", "these", "they", "this", "those", "through", "to", "up", "us", "very", "was", "we",
    "were", "what", "when", "where", "which", "who", "will", "with", "would", "you", "your",
];

/// English words that are not useful for detection (too rare or too generic to
/// tell languages apart) but must still split RAKE candidates, otherwise verbs
/// like "used" or "given" glue noun phrases together.
#[rustfmt::skip]
pub const EN_RAKE_EXTRA: &[&str] = &[
    "again", "against", "almost", "already", "although", "always", "am", "among", "another",
    "anyone", "anything", "around", "away", "before", "being", "below", "between", "both", "came",
    "come", "considered", "doing", "done", "down", "during", "each", "either", "else", "enough",
    "even", "ever", "every", "few", "first", "further", "get", "gets", "given", "gives", "go",
    "goes", "going", "got", "here", "herself", "himself", "however", "i'm", "it's", "itself",
    "let", "like", "made", "make", "makes", "many", "may", "might", "much", "must", "myself",
    "neither", "never", "new", "nor", "now", "off", "often", "once", "one", "ones", "ourselves",
    "own", "per", "perhaps", "put", "quite", "rather", "really", "said", "same", "say", "says",
    "see", "seen", "several", "shall", "since", "still", "take", "taken", "themselves", "thing",
    "things", "though", "thus", "too", "two", "under", "until", "upon", "use", "used", "uses",
    "using", "via", "want", "way", "well", "went", "whether", "while", "whom", "whose", "why",
    "within", "without", "yet", "yourself", "don't", "doesn't", "didn't", "isn't", "aren't",
    "wasn't", "weren't", "won't", "can't", "cannot", "let's", "that's", "there's", "they're",
    "we're", "you're", "i've", "we've", "you've", "they've",
    // Time and degree adverbs that otherwise glue onto noun phrases
    // ("failed twice last winter").
    "according", "across", "along", "behind", "beyond", "finally", "instead", "last", "later",
    "mostly", "nearly", "next", "recently", "roughly", "soon", "toward", "towards", "twice",
];

#[rustfmt::skip]
pub const DE: &[&str] = &[
    "aber", "als", "am", "an", "auch", "auf", "aus", "bei", "bis", "da", "dann", "das", "dass",
    "dem", "den", "der", "des", "die", "diese", "diesem", "diesen", "dieser", "dieses", "doch",
    "durch", "ein", "eine", "einem", "einen", "einer", "eines", "er", "es", "für", "gegen", "hat",
    "haben", "hatte", "hier", "ich", "ihr", "ihre", "ihren", "im", "in", "ist", "kann", "kein",
    "keine", "man", "mehr", "mit", "nach", "nicht", "noch", "nur", "oder", "schon", "sehr",
    "sein", "seine", "sich", "sie", "sind", "so", "um", "und", "unter", "vom", "von", "vor",
    "war", "waren", "weil", "wenn", "werden", "wie", "wir", "wird", "wurde", "wurden", "zu",
    "zum", "zur", "zwischen", "über",
];

#[rustfmt::skip]
pub const FR: &[&str] = &[
    "a", "au", "aussi", "aux", "avec", "avoir", "car", "ce", "ces", "cette", "chez", "comme",
    "dans", "de", "des", "donc", "dont", "du", "elle", "elles", "en", "entre", "est", "et",
    "fait", "il", "ils", "je", "la", "le", "les", "leur", "leurs", "lui", "mais", "même", "ne",
    "nous", "on", "ont", "ou", "où", "par", "pas", "plus", "pour", "qu'il", "que", "qui", "sa",
    "sans", "se", "ses", "son", "sont", "sous", "sur", "tous", "tout", "très", "un", "une",
    "vous", "y", "était", "été", "être", "qu'on", "d'un", "l'on",
    // Elided articles and pronouns (l'analyse, d'abord, qu'elle) are split off
    // by the tokenizer and land here as bare letters.
    "c", "d", "j", "l", "m", "n", "qu", "s", "t",
];

#[rustfmt::skip]
pub const ES: &[&str] = &[
    "a", "al", "cada", "como", "con", "cuando", "de", "del", "donde", "el", "ella", "ellos", "en",
    "entre", "era", "es", "esa", "ese", "esta", "estas", "este", "estos", "está", "están", "fue",
    "ha", "han", "hay", "la", "las", "le", "les", "lo", "los", "mi", "muy", "más", "no", "nos",
    "o", "para", "pero", "por", "porque", "que", "se", "ser", "sin", "sobre", "son", "su", "sus",
    "también", "tiene", "todo", "todos", "un", "una", "unas", "uno", "unos", "y", "ya", "yo",
    "él",
];

#[rustfmt::skip]
pub const IT: &[&str] = &[
    "a", "ai", "al", "alla", "alle", "allo", "anche", "ancora", "che", "ci", "come", "con", "da",
    "dal", "dalla", "degli", "dei", "del", "della", "delle", "dello", "di", "dove", "e", "era",
    "essere", "fra", "gli", "già", "ha", "hanno", "i", "il", "in", "la", "le", "lo", "loro", "ma",
    "mi", "molto", "ne", "nei", "nel", "nella", "non", "per", "perché", "più", "quando", "quella",
    "quello", "questa", "questi", "questo", "se", "si", "sono", "stato", "su", "sua", "suo", "ti",
    "tra", "tutti", "tutto", "un", "una", "uno", "è",
    // Elided forms (l'anno, dell'analisi, nell'ambito) split by the tokenizer.
    "l", "all", "dall", "dell", "nell", "sull",
];

#[rustfmt::skip]
pub const PT: &[&str] = &[
    "a", "ao", "aos", "as", "com", "como", "da", "das", "de", "do", "dos", "e", "ela", "elas",
    "ele", "eles", "em", "entre", "essa", "esse", "esta", "este", "está", "estão", "eu", "foi",
    "há", "isso", "já", "mais", "mas", "muito", "na", "nas", "no", "nos", "não", "nós", "o",
    "onde", "os", "ou", "para", "pela", "pelo", "por", "porque", "quando", "que", "se", "ser",
    "seu", "seus", "sua", "suas", "são", "também", "tem", "ter", "têm", "um", "uma", "umas",
    "uns", "à", "às", "é",
];

#[rustfmt::skip]
pub const NL: &[&str] = &[
    "aan", "al", "als", "bij", "dan", "dat", "de", "deze", "die", "dit", "door", "een", "en",
    "er", "geen", "geweest", "haar", "heeft", "hebben", "het", "hij", "hun", "ik", "in", "is",
    "je", "kan", "maar", "meer", "met", "naar", "niet", "nog", "nu", "of", "ook", "om", "omdat",
    "onder", "op", "over", "te", "tot", "tussen", "uit", "van", "veel", "voor", "waar", "wanneer",
    "was", "waren", "wat", "we", "werd", "wij", "wordt", "worden", "ze", "zij", "zijn", "zo",
    "zonder",
];

/// Languages in bit order of [`membership`] masks.
pub const LANGS: [(&str, &[&str]); 7] = [
    ("en", EN),
    ("de", DE),
    ("fr", FR),
    ("es", ES),
    ("it", IT),
    ("pt", PT),
    ("nl", NL),
];

/// Bit set on words that only split RAKE candidates in English.
pub const EN_RAKE_BIT: u8 = 1 << 7;

static MEMBERSHIP: LazyLock<HashMap<&'static str, u8>> = LazyLock::new(|| {
    let mut map: HashMap<&'static str, u8> = HashMap::with_capacity(700);
    for (bit, (_, words)) in LANGS.iter().enumerate() {
        for w in words.iter() {
            *map.entry(w).or_insert(0) |= 1 << bit;
        }
    }
    for w in EN_RAKE_EXTRA {
        *map.entry(w).or_insert(0) |= EN_RAKE_BIT;
    }
    map
});

/// Bitmask of the stopword lists containing `lowercase_word`: bit `i` is
/// `LANGS[i]`, plus [`EN_RAKE_BIT`]. One lookup answers both "which languages"
/// and "is it a delimiter", so callers hash each token once.
pub fn membership(lowercase_word: &str) -> u8 {
    MEMBERSHIP.get(lowercase_word).copied().unwrap_or(0)
}

/// Index of a language code in [`LANGS`].
pub fn lang_index(code: &str) -> Option<usize> {
    LANGS.iter().position(|(c, _)| *c == code)
}
