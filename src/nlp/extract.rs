//! Keyword and named-entity extraction.
//!
//! Both are heuristics tuned for tagging and search facets, where a cheap,
//! explainable, deterministic answer beats a model that cannot run inside a
//! Worker.
//!
//! Keywords: candidates are content-word stems and two-word phrases of
//! adjacent content words (no punctuation between them). Grouping by stem
//! merges "model"/"models"; the surface form shown is the one seen most.
//! A candidate scores `tf × (1 + 0.5 × (1 − first_offset / len))`, i.e. term
//! frequency with a boost for terms introduced early, where documents put
//! their subject; phrases must repeat to count and get ×1.5, since a
//! repeated phrase is more specific than either of its words. A candidate
//! whose stems are all already covered by better keywords is skipped, so
//! "machine learning" does not also produce "learning".
//!
//! Entities: capitalization is the only strong signal available without a
//! model, so an entity is a run of capitalized words, optionally joined by
//! name particles ("of", "de", "van"). The first word of a sentence is
//! capitalized anyway, so it only counts when the same word is capitalized
//! mid-sentence elsewhere or is a known name. The kind comes from cues in
//! priority order: organization words anywhere in the name, a title before
//! or a speech verb after (person), gazetteers and geographic head words
//! (place), known given names (person), a locative preposition before
//! (place), short all-caps acronyms (organization). Cues vote across all
//! mentions of the same name.

use std::cmp::Ordering;
use std::collections::HashSet;

use super::tokenize::{self, in_sorted, FnvBuildHasher, FnvHashMap, Token};

/// Countries, continents and nations, lowercase and sorted.
#[rustfmt::skip]
const COUNTRIES: &[&str] = &[
    "afghanistan", "africa", "albania", "algeria", "america", "antarctica", "argentina",
    "armenia", "asia", "australia", "austria", "bangladesh", "belgium", "bolivia", "brazil",
    "bulgaria", "cambodia", "canada", "chile", "china", "colombia", "croatia", "cuba",
    "czechia", "denmark", "ecuador", "egypt", "england", "estonia", "ethiopia", "europe",
    "finland", "france", "germany", "ghana", "greece", "hungary", "iceland", "india",
    "indonesia", "iran", "iraq", "ireland", "israel", "italy", "japan", "jordan", "kenya",
    "korea", "latvia", "lebanon", "libya", "lithuania", "malaysia", "mexico", "morocco",
    "nepal", "netherlands", "new zealand", "nigeria", "north korea", "norway", "pakistan",
    "peru", "philippines", "poland", "portugal", "romania", "russia", "saudi arabia",
    "scotland", "serbia", "singapore", "slovakia", "slovenia", "south africa", "south korea",
    "spain", "sri lanka", "sudan", "sweden", "switzerland", "syria", "taiwan", "tanzania",
    "thailand", "tunisia", "turkey", "uganda", "uk", "ukraine", "united kingdom",
    "united states", "uruguay", "us", "usa", "venezuela", "vietnam", "wales", "yemen", "zimbabwe"
];

/// Large cities, lowercase and sorted.
#[rustfmt::skip]
const CITIES: &[&str] = &[
    "amsterdam", "athens", "atlanta", "bangkok", "barcelona", "beijing", "berlin", "bogota",
    "boston", "brussels", "budapest", "buenos aires", "cairo", "chicago", "copenhagen", "delhi",
    "dhaka", "dubai", "dublin", "edinburgh", "geneva", "hanoi", "havana", "helsinki", 
    "hong kong", "istanbul", "jakarta", "johannesburg", "karachi", "kiev", "krakow", "kyiv", "lagos",
    "lahore", "lima", "lisbon", "london", "los angeles", "lyon", "madrid", "manila",
    "marseille", "melbourne", "mexico city", "miami", "milan", "montreal", "moscow", "mumbai",
    "munich", "nairobi", "new york", "osaka", "oslo", "paris", "prague", "rio de janeiro",
    "rome", "san francisco", "santiago", "seattle", "seoul", "shanghai", "singapore",
    "stockholm", "sydney", "tehran", "tokyo", "toronto", "vancouver", "vienna", "warsaw",
    "washington", "zurich"
];

/// Common given names, lowercase and sorted; a run starting with one is a person.
#[rustfmt::skip]
const FIRST_NAMES: &[&str] = &[
    "ada", "adam", "ahmed", "alan", "albert", "alex", "alexander", "alice", "ana", "andrew",
    "anna", "anne", "barbara", "ben", "carlos", "charles", "charlotte", "chris", "daniel",
    "david", "elizabeth", "emily", "emma", "fatima", "george", "grace", "hannah", "harry",
    "helen", "henry", "hiroshi", "isaac", "isabella", "jack", "james", "jane", "jean",
    "jennifer", "john", "joseph", "juan", "julia", "karen", "laura", "li", "liam", "linda",
    "lisa", "lucas", "ludwig", "luis", "maria", "marie", "mark", "mary", "michael", "mohammed",
    "muhammad", "nicolas", "noah", "olivia", "paul", "peter", "pierre", "richard", "robert",
    "sarah", "sofia", "sophie", "steven", "susan", "thomas", "wei", "william", "wolfgang",
    "yuki"
];

/// Words that make a name an organization wherever they appear in it.
#[rustfmt::skip]
const ORG_WORDS: &[&str] = &[
    "academy", "agency", "airlines", "association", "bank", "bureau", "co", "college",
    "commission", "committee", "company", "corp", "corporation", "council", "department",
    "federation", "foundation", "gmbh", "group", "holdings", "hospital", "inc", "incorporated",
    "industries", "institute", "laboratories", "laboratory", "labs", "llc", "ltd", "ministry",
    "museum", "organisation", "organization", "partners", "party", "plc", "press", "school",
    "society", "technologies", "union", "university"
];

/// Geographic head words ("Hudson River", "Mount Everest").
#[rustfmt::skip]
const PLACE_WORDS: &[&str] = &[
    "avenue", "bay", "beach", "canyon", "city", "coast", "county", "desert", "falls", "forest",
    "gulf", "harbor", "harbour", "island", "islands", "kingdom", "lake", "mount", "mountain",
    "mountains", "ocean", "peninsula", "province", "region", "republic", "river", "road", "sea",
    "states", "street", "valley"
];

/// Personal titles; the name after one is a person. Not part of the name.
#[rustfmt::skip]
const TITLES: &[&str] = &[
    "dame", "doctor", "dr", "judge", "king", "lady", "lord", "madam", "miss", "mr", "mrs", "ms",
    "pope", "president", "prince", "princess", "prof", "professor", "queen", "rev", "saint",
    "senator", "sir"
];

/// Lowercase particles allowed inside a name ("University of Paris", "Ludwig van Beethoven").
#[rustfmt::skip]
const CONNECTORS: &[&str] = &[
    "al", "bin", "da", "de", "del", "della", "der", "des", "di", "du", "el", "la", "le", "of",
    "the", "van", "von", "y"
];

/// Capitalized but never entities in this sense.
#[rustfmt::skip]
const CALENDAR: &[&str] = &[
    "april", "august", "december", "february", "friday", "january", "july", "june", "march",
    "monday", "november", "october", "saturday", "september", "sunday", "thursday", "tuesday",
    "wednesday"
];

/// Verbs that, right after a name, indicate a person.
#[rustfmt::skip]
const PERSON_VERBS: &[&str] = &[
    "argued", "explained", "married", "said", "says", "told", "wrote"
];

/// Prepositions that, right before a name, suggest a place.
#[rustfmt::skip]
const PLACE_PREPOSITIONS: &[&str] = &[
    "at", "from", "in", "near"
];

/// A keyword or key phrase with its relative importance.
#[derive(Debug, Clone, PartialEq)]
pub struct Keyword {
    /// Lowercase surface form ("machine learning", "models").
    pub term: String,
    /// Score relative to the best keyword, in (0, 1].
    pub score: f32,
}

/// The kind of a named entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityKind {
    Person,
    Organization,
    Place,
    Other,
}

impl EntityKind {
    /// Lowercase name, for serialization by callers.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Person => "person",
            EntityKind::Organization => "organization",
            EntityKind::Place => "place",
            EntityKind::Other => "other",
        }
    }
}

/// A named entity and how often it is mentioned.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// The name as written, without titles or possessive "'s".
    pub text: String,
    pub kind: EntityKind,
    pub count: u32,
}

const POSITION_BOOST: f32 = 0.5;
const PHRASE_FACTOR: f32 = 1.5;
const MIN_PHRASE_TF: u32 = 2;
/// Longest capitalized run taken as one name; longer runs are usually
/// Title Case headings, not names.
const MAX_NAME_WORDS: usize = 6;

/// A keyword key or surface form: `(first, second)` words, with `second`
/// empty for single words. Borrowed from the tokens, so counting allocates
/// nothing per occurrence.
type Pair<'a> = (&'a str, &'a str);

/// Orders pairs exactly as their rendered strings ("a b") would order.
fn pair_cmp(a: Pair, b: Pair) -> Ordering {
    fn bytes<'a>(p: Pair<'a>) -> impl Iterator<Item = u8> + 'a {
        let sep: &[u8] = if p.1.is_empty() { b"" } else { b" " };
        p.0.bytes().chain(sep.iter().copied()).chain(p.1.bytes())
    }
    bytes(a).cmp(bytes(b))
}

fn render(p: Pair) -> String {
    if p.1.is_empty() {
        p.0.to_string()
    } else {
        format!("{} {}", p.0, p.1)
    }
}

struct Candidate<'a> {
    tf: u32,
    first: usize,
    /// The first surface form seen and its count; most stems have only one,
    /// so `others` rarely allocates.
    head: (Pair<'a>, u32),
    others: Vec<(Pair<'a>, u32)>,
}

impl<'a> Candidate<'a> {
    fn new(first: usize, surface: Pair<'a>) -> Self {
        Candidate { tf: 0, first, head: (surface, 0), others: Vec::new() }
    }

    fn add(&mut self, surface: Pair<'a>) {
        self.tf += 1;
        if self.head.0 == surface {
            self.head.1 += 1;
        } else if let Some((_, n)) = self.others.iter_mut().find(|(s, _)| *s == surface) {
            *n += 1;
        } else {
            self.others.push((surface, 1));
        }
    }

    /// Most frequent surface form; ties go to the alphabetically first.
    fn surface(&self) -> Pair<'a> {
        std::iter::once(&self.head)
            .chain(&self.others)
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| pair_cmp(b.0, a.0)))
            .map_or(("", ""), |(s, _)| *s)
    }
}

/// The `k` most important keywords and key phrases of `text`, best first.
pub fn keywords(text: &str, k: usize) -> Vec<Keyword> {
    if k == 0 {
        return Vec::new();
    }
    let toks = tokenize::tokens(text);
    let mut cands: FnvHashMap<Pair, Candidate> =
        FnvHashMap::with_capacity_and_hasher(toks.len(), Default::default());
    for (i, t) in toks.iter().enumerate() {
        if !t.content {
            continue;
        }
        let surface = (t.lower.as_ref(), "");
        cands
            .entry((t.stem.as_ref(), ""))
            .or_insert_with(|| Candidate::new(t.start, surface))
            .add(surface);
        if let Some(next) = toks.get(i + 1) {
            if next.content && tokenize::joins(&text[t.end..next.start]) {
                let surface = (t.lower.as_ref(), next.lower.as_ref());
                cands
                    .entry((t.stem.as_ref(), next.stem.as_ref()))
                    .or_insert_with(|| Candidate::new(t.start, surface))
                    .add(surface);
            }
        }
    }

    let len = text.len().max(1) as f32;
    let mut scored: Vec<(f32, Pair, Pair)> = cands
        .iter()
        .filter(|(stems, c)| stems.1.is_empty() || c.tf >= MIN_PHRASE_TF)
        .map(|(&stems, c)| {
            let boost = 1.0 + POSITION_BOOST * (1.0 - c.first as f32 / len);
            let factor = if stems.1.is_empty() { 1.0 } else { PHRASE_FACTOR };
            let score = c.tf as f32 * boost * factor;
            (score, c.surface(), stems)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| pair_cmp(a.1, b.1)));

    let mut covered: HashSet<&str, FnvBuildHasher> = HashSet::default();
    let mut out = Vec::new();
    let top = scored.first().map_or(1.0, |s| s.0);
    for (score, surface, (a, b)) in scored {
        if out.len() == k {
            break;
        }
        let new_a = !covered.contains(a);
        let new_b = !b.is_empty() && !covered.contains(b);
        if !new_a && !new_b {
            continue;
        }
        covered.insert(a);
        if !b.is_empty() {
            covered.insert(b);
        }
        out.push(Keyword { term: render(surface), score: score / top });
    }
    out
}

/// Per-token facts used while scanning for names.
struct NameToken<'a> {
    /// Surface text without a possessive "'s".
    base: &'a str,
    /// Lowercase of `base`.
    lower: &'a str,
    possessive: bool,
    capitalized: bool,
    sentence_initial: bool,
}

fn strip_possessive(s: &str) -> (&str, bool) {
    for suffix in ["'s", "\u{2019}s", "'S"] {
        if let Some(base) = s.strip_suffix(suffix) {
            if !base.is_empty() {
                return (base, true);
            }
        }
    }
    (s, false)
}

fn is_gazetteer_name(lower: &str) -> bool {
    in_sorted(COUNTRIES, lower) || in_sorted(CITIES, lower) || in_sorted(FIRST_NAMES, lower)
}

fn name_tokens<'a>(text: &'a str, toks: &'a [Token]) -> Vec<NameToken<'a>> {
    let mut initial = vec![false; toks.len()];
    let mut ti = 0usize;
    for (s, _) in tokenize::sentences(text) {
        while ti < toks.len() && toks[ti].start < s {
            ti += 1;
        }
        if let Some(flag) = initial.get_mut(ti) {
            *flag = true;
        }
    }
    toks.iter()
        .zip(initial)
        .map(|(t, sentence_initial)| {
            let (base, possessive) = strip_possessive(&text[t.start..t.end]);
            let (lower, _) = strip_possessive(&t.lower);
            let capitalized = base.chars().next().is_some_and(char::is_uppercase)
                && base.chars().nth(1).is_some()
                && !tokenize::is_stopword(lower)
                && !in_sorted(CALENDAR, lower)
                && !in_sorted(TITLES, lower);
            NameToken { base, lower, possessive, capitalized, sentence_initial }
        })
        .collect()
}

/// Kind suggested by one mention: the run `toks[first..=last]`.
fn mention_kind(
    text: &str,
    toks: &[Token],
    names: &[NameToken],
    first: usize,
    last: usize,
) -> EntityKind {
    let words: Vec<&str> =
        (first..=last).filter(|&i| names[i].capitalized).map(|i| names[i].lower).collect();
    let full = words.join(" ");
    let gap_before = first.checked_sub(1).map(|p| (p, &text[toks[p].end..toks[first].start]));
    let title_before = gap_before.is_some_and(|(p, gap)| {
        // "Dr. Curie", "Mr Smith": only a period and spaces in between.
        in_sorted(TITLES, names[p].lower)
            && !gap.is_empty()
            && gap.trim_start_matches('.').trim().is_empty()
    });
    let prep_before = gap_before.is_some_and(|(p, gap)| {
        tokenize::joins(gap) && in_sorted(PLACE_PREPOSITIONS, &toks[p].lower)
    });
    let verb_after = toks.get(last + 1).is_some_and(|n| {
        !names[last].possessive
            && tokenize::joins(&text[toks[last].end..n.start])
            && in_sorted(PERSON_VERBS, &n.lower)
    });
    let single = first == last;
    let base = names[first].base;
    let acronym = single
        && (2..=5).contains(&base.chars().count())
        && base.chars().all(|c| c.is_ascii_uppercase());

    if words.iter().any(|w| in_sorted(ORG_WORDS, w)) {
        EntityKind::Organization
    } else if title_before || verb_after {
        EntityKind::Person
    } else if in_sorted(COUNTRIES, &full)
        || in_sorted(CITIES, &full)
        || words.iter().any(|w| in_sorted(PLACE_WORDS, w))
    {
        EntityKind::Place
    } else if words.first().is_some_and(|w| in_sorted(FIRST_NAMES, w)) {
        EntityKind::Person
    } else if prep_before {
        EntityKind::Place
    } else if acronym {
        EntityKind::Organization
    } else {
        EntityKind::Other
    }
}

#[derive(Default)]
struct Mentions {
    count: u32,
    /// Votes for Person, Organization, Place.
    votes: [u32; 3],
}

/// The `k` most mentioned named entities of `text`, most frequent first.
pub fn entities(text: &str, k: usize) -> Vec<Entity> {
    if k == 0 {
        return Vec::new();
    }
    let toks = tokenize::tokens(text);
    let names = name_tokens(text, &toks);
    let n = toks.len();
    let seen_mid_sentence: HashSet<&str, FnvBuildHasher> =
        names.iter().filter(|t| t.capitalized && !t.sentence_initial).map(|t| t.base).collect();
    let joined = |a: usize, b: usize| tokenize::joins(&text[toks[a].end..toks[b].start]);

    let mut found: FnvHashMap<String, Mentions> = FnvHashMap::default();
    let mut i = 0usize;
    while i < n {
        let t = &names[i];
        let eligible = t.capitalized
            && (!t.sentence_initial
                || seen_mid_sentence.contains(t.base)
                || is_gazetteer_name(t.lower));
        if !eligible {
            i += 1;
            continue;
        }
        let mut last = i;
        let mut words = 1usize;
        while !names[last].possessive && words < MAX_NAME_WORDS {
            let next = last + 1;
            if next < n && names[next].capitalized && joined(last, next) {
                last = next;
                words += 1;
                continue;
            }
            // Up to two particles followed by a capitalized word.
            let mut j = next;
            while j < n && j - next < 2 && in_sorted(CONNECTORS, &toks[j].lower) && joined(j - 1, j)
            {
                j += 1;
            }
            if j > next && j < n && names[j].capitalized && joined(j - 1, j) {
                last = j;
                words += 1;
                continue;
            }
            break;
        }

        let mut name = String::from(names[i].base);
        for p in i + 1..=last {
            let gap = &text[toks[p - 1].end..toks[p].start];
            if gap.chars().any(char::is_whitespace) || gap.is_empty() {
                name.push(' ');
            } else {
                name.push_str(gap);
            }
            name.push_str(names[p].base);
        }
        let kind = mention_kind(text, &toks, &names, i, last);
        let entry = found.entry(name).or_default();
        entry.count += 1;
        match kind {
            EntityKind::Person => entry.votes[0] += 1,
            EntityKind::Organization => entry.votes[1] += 1,
            EntityKind::Place => entry.votes[2] += 1,
            EntityKind::Other => {}
        }
        i = last + 1;
    }

    let mut list: Vec<Entity> = found
        .iter()
        .map(|(text, m)| {
            let best = m.votes.iter().copied().max().unwrap_or(0);
            // Ties resolve Person > Organization > Place.
            let kind = match m.votes.iter().position(|&v| v == best && v > 0) {
                Some(0) => EntityKind::Person,
                Some(1) => EntityKind::Organization,
                Some(2) => EntityKind::Place,
                _ => EntityKind::Other,
            };
            Entity { text: text.clone(), kind, count: m.count }
        })
        .collect();
    resolve_surnames(&mut list);
    list.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.text.cmp(&b.text)));
    list.truncate(k);
    list
}

/// Use surname back-references: a plain two- or three-word name whose last
/// word also occurs alone ("Marie Curie" … "Curie") is a person, as is the
/// lone surname; when the surname belongs to exactly one such name, its
/// mentions are counted for the full name.
fn resolve_surnames(list: &mut Vec<Entity>) {
    let singles: FnvHashMap<String, usize> = list
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.text.contains(' '))
        .map(|(i, e)| (e.text.clone(), i))
        .collect();
    // Single-word entity index → full names ending with it.
    let mut owners: FnvHashMap<usize, Vec<usize>> = FnvHashMap::default();
    for (i, e) in list.iter_mut().enumerate() {
        if !matches!(e.kind, EntityKind::Person | EntityKind::Other) {
            continue;
        }
        let words: Vec<&str> = e.text.split(' ').collect();
        let plain = (2..=3).contains(&words.len())
            && words.iter().all(|w| w.chars().next().is_some_and(char::is_uppercase));
        if let Some(&single) = words.last().and_then(|w| singles.get(*w)).filter(|_| plain) {
            e.kind = EntityKind::Person;
            owners.entry(single).or_default().push(i);
        }
    }
    for (single, full_names) in owners {
        if list[single].kind == EntityKind::Other {
            list[single].kind = EntityKind::Person;
        }
        if let [owner] = full_names[..] {
            list[owner].count += list[single].count;
            list[single].count = 0;
        }
    }
    list.retain(|e| e.count > 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    const CURIE: &str = "Marie Curie was a physicist and chemist who conducted pioneering research \
        on radioactivity. Born in Warsaw, Poland, she moved to France in 1891 to study at the \
        University of Paris. There she met Pierre Curie, a professor of physics. Together they \
        discovered polonium, which she named after Poland, and radium. Marie Curie later became \
        the first woman to win a Nobel Prize. Dr. Curie also founded the Radium Institute in Paris.";

    const ML: &str = "Machine learning models learn patterns from data. Training a machine \
        learning model requires labeled data and careful evaluation. Models that overfit the \
        training data generalize poorly. Regularization helps models generalize to new data.";

    fn find<'a>(list: &'a [Entity], text: &str) -> Option<&'a Entity> {
        list.iter().find(|e| e.text == text)
    }

    #[test]
    fn lists_are_sorted() {
        for list in [
            COUNTRIES,
            CITIES,
            FIRST_NAMES,
            ORG_WORDS,
            PLACE_WORDS,
            TITLES,
            CONNECTORS,
            CALENDAR,
            PERSON_VERBS,
            PLACE_PREPOSITIONS,
        ] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "{list:?}");
        }
    }

    #[test]
    fn keywords_of_known_text() {
        let kws = keywords(ML, 6);
        let terms: Vec<&str> = kws.iter().map(|k| k.term.as_str()).collect();
        // Both occur four times; "models" appears first.
        assert_eq!(terms[..2], ["models", "data"], "{kws:?}");
        for expected in ["data", "models", "machine learning", "training", "generalize"] {
            assert!(terms.contains(&expected), "missing {expected}: {kws:?}");
        }
        // "learning" and "machine" are covered by the phrase.
        assert!(!terms.contains(&"learning") && !terms.contains(&"machine"));
        assert!((kws[0].score - 1.0).abs() < 1e-6);
        assert!(kws.windows(2).all(|w| w[0].score >= w[1].score));
        assert!(kws.iter().all(|k| k.score > 0.0 && k.score <= 1.0));
    }

    #[test]
    fn keywords_merge_stems_and_pick_common_surface() {
        let kws = keywords("Servers crash. The server restarts. Servers recover.", 3);
        assert_eq!(kws[0], Keyword { term: "servers".into(), score: 1.0 });
        assert_eq!(kws.len(), 3);
    }

    #[test]
    fn keywords_edge_cases() {
        assert!(keywords("", 5).is_empty());
        assert!(keywords("the of and", 5).is_empty());
        assert!(keywords(ML, 0).is_empty());
        assert_eq!(keywords(ML, 2).len(), 2);
        assert_eq!(keywords(ML, 5), keywords(ML, 5));
    }

    #[test]
    fn keyword_ties_break_by_term() {
        let kws = keywords("zebra apple", 2);
        // "zebra" is earlier, so it wins on position; same-position ties are
        // impossible, but equal scores must still order by term.
        assert_eq!(kws[0].term, "zebra");
        let kws = keywords("alpha. beta.", 5);
        assert_eq!(kws.len(), 2);
    }

    #[test]
    fn entities_of_known_passage() {
        let ents = entities(CURIE, 20);
        let curie = find(&ents, "Marie Curie").expect("Marie Curie");
        assert_eq!(curie.kind, EntityKind::Person);
        assert_eq!(curie.count, 2);
        let paris_u = find(&ents, "University of Paris").expect("University of Paris");
        assert_eq!(paris_u.kind, EntityKind::Organization);
        let poland = find(&ents, "Poland").expect("Poland");
        assert_eq!(poland.kind, EntityKind::Place);
        assert_eq!(poland.count, 2);
        assert_eq!(find(&ents, "Warsaw").map(|e| e.kind), Some(EntityKind::Place));
        assert_eq!(find(&ents, "Pierre Curie").map(|e| e.kind), Some(EntityKind::Person));
        assert_eq!(find(&ents, "Radium Institute").map(|e| e.kind), Some(EntityKind::Organization));
        assert_eq!(find(&ents, "Curie").map(|e| e.kind), Some(EntityKind::Person));
        // Sentence-initial common words are not entities.
        assert!(find(&ents, "Together").is_none());
        assert!(find(&ents, "Born").is_none());
        assert!(find(&ents, "Dr").is_none());
        // Sorted by count desc, then text.
        assert!(ents.windows(2).all(
            |w| w[0].count > w[1].count || (w[0].count == w[1].count && w[0].text < w[1].text)
        ));
        assert_eq!(entities(CURIE, 2).len(), 2);
    }

    #[test]
    fn entity_kind_cues() {
        let text = "Yesterday Mr. Smith joined Acme Corp in Springfield. Ms. Jones said the \
            deal with NASA was good. Later Smith flew to the Hudson River.";
        let ents = entities(text, 10);
        assert_eq!(find(&ents, "Smith").map(|e| (e.kind, e.count)), Some((EntityKind::Person, 2)));
        assert_eq!(find(&ents, "Jones").map(|e| e.kind), Some(EntityKind::Person));
        assert_eq!(find(&ents, "Acme Corp").map(|e| e.kind), Some(EntityKind::Organization));
        assert_eq!(find(&ents, "Springfield").map(|e| e.kind), Some(EntityKind::Place));
        assert_eq!(find(&ents, "NASA").map(|e| e.kind), Some(EntityKind::Organization));
        assert_eq!(find(&ents, "Hudson River").map(|e| e.kind), Some(EntityKind::Place));
        assert!(find(&ents, "Yesterday").is_none());
    }

    #[test]
    fn surnames_merge_into_a_unique_full_name() {
        let text = "We met Grace Hopper at the lab. Later, Hopper explained compilers.";
        let ents = entities(text, 5);
        assert_eq!(
            ents,
            vec![Entity { text: "Grace Hopper".into(), kind: EntityKind::Person, count: 2 }]
        );
    }

    #[test]
    fn particles_and_possessives() {
        let text = "Music by Ludwig van Beethoven moved us. We read Beethoven's letters.";
        let ents = entities(text, 5);
        assert_eq!(find(&ents, "Ludwig van Beethoven").map(|e| e.kind), Some(EntityKind::Person));
        // "of" alone without a capitalized word after it does not join.
        let ents = entities("We spoke with Paris of course.", 5);
        assert_eq!(find(&ents, "Paris").map(|e| e.kind), Some(EntityKind::Place));
        assert_eq!(EntityKind::Place.as_str(), "place");
    }
}
