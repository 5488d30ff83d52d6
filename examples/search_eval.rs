//! Search quality: nDCG@10 and recall@10 of vector-only, keyword-only and
//! hybrid search over a generated, judged corpus, measured against the real
//! system (wrangler dev). Run with `make eval`.
//!
//! The corpus is generated here, deterministically: 25 topics × 8 documents
//! (200), each written from its topic's vocabulary plus a few words borrowed
//! from other topics, and 2 queries per topic (50). One query of each topic
//! uses the topic's exact rare terms; the other paraphrases with inflected and
//! related forms, misspelled the way hurried users type. A document of the query's topic is relevant (gain 1), and
//! gets gain 2 when it contains at least two of the query's terms.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::*;

struct Topic {
    name: &'static str,
    terms: &'static [&'static str],
    paraphrase: &'static str,
}

const TOPICS: &[Topic] = &[
    Topic { name: "volcanology", terms: &["magma", "caldera", "lava", "eruption", "pyroclastic", "basalt", "vent", "ash", "seismograph", "tephra"], paraphrase: "volcanic eruptions spewing molten lava and ash clouds" },
    Topic { name: "sourdough", terms: &["starter", "levain", "yeast", "dough", "flour", "crumb", "proofing", "gluten", "oven", "boule"], paraphrase: "baking breads with wild yeasts and long proofs" },
    Topic { name: "astronomy", terms: &["telescope", "nebula", "galaxy", "redshift", "parallax", "exoplanet", "quasar", "orbit", "spectrograph", "supernova"], paraphrase: "telescopes observing distant galaxies and exploding stars" },
    Topic { name: "beekeeping", terms: &["hive", "queen", "nectar", "honeycomb", "pollen", "drone", "swarm", "apiary", "propolis", "varroa"], paraphrase: "keeping honeybees and harvesting honeycombs from hives" },
    Topic { name: "cycling", terms: &["derailleur", "cassette", "chainring", "peloton", "cadence", "saddle", "sprocket", "gravel", "crankset", "tubeless"], paraphrase: "riding bicycles with gears and pedaling cadences" },
    Topic { name: "chess", terms: &["gambit", "endgame", "castling", "bishop", "rook", "checkmate", "opening", "pawn", "zugzwang", "sicilian"], paraphrase: "chess openings, sacrificed pawns and checkmating kings" },
    Topic { name: "coffee", terms: &["espresso", "arabica", "roast", "crema", "grinder", "barista", "portafilter", "extraction", "robusta", "latte"], paraphrase: "brewing espressos from freshly roasted arabica beans" },
    Topic { name: "glaciology", terms: &["glacier", "moraine", "crevasse", "icefield", "calving", "firn", "serac", "meltwater", "cirque", "permafrost"], paraphrase: "melting glaciers calving icebergs into the sea" },
    Topic { name: "jazz", terms: &["saxophone", "improvisation", "bebop", "syncopation", "trumpet", "swing", "chord", "bassist", "ensemble", "blues"], paraphrase: "improvising saxophonists swinging through bebop chords" },
    Topic { name: "cryptography", terms: &["cipher", "encryption", "plaintext", "hash", "signature", "elliptic", "nonce", "keypair", "ciphertext", "entropy"], paraphrase: "encrypting messages with ciphers and signing keys" },
    Topic { name: "gardening", terms: &["compost", "mulch", "seedling", "perennial", "trellis", "pruning", "loam", "tomato", "raised", "watering"], paraphrase: "growing tomatoes and seedlings in composted soils" },
    Topic { name: "sailing", terms: &["mainsail", "jib", "tack", "keel", "rudder", "halyard", "spinnaker", "mooring", "starboard", "gybe"], paraphrase: "sailboats tacking upwind with trimmed mainsails" },
    Topic { name: "immunology", terms: &["antibody", "antigen", "lymphocyte", "vaccine", "cytokine", "macrophage", "immunity", "pathogen", "tcell", "inflammation"], paraphrase: "vaccines training antibodies to fight pathogens" },
    Topic { name: "railways", terms: &["locomotive", "signalling", "sleeper", "gauge", "timetable", "freight", "platform", "catenary", "junction", "carriage"], paraphrase: "locomotives hauling freight trains along railway lines" },
    Topic { name: "photography", terms: &["aperture", "shutter", "exposure", "lens", "sensor", "bokeh", "tripod", "iso", "focal", "histogram"], paraphrase: "photographers adjusting apertures and shutter speeds" },
    Topic { name: "winemaking", terms: &["vineyard", "grape", "fermentation", "tannin", "barrel", "vintage", "cellar", "sommelier", "terroir", "harvest"], paraphrase: "fermenting grapes from vineyards into aged wines" },
    Topic { name: "robotics", terms: &["actuator", "servo", "gripper", "kinematics", "lidar", "odometry", "manipulator", "controller", "torque", "navigation"], paraphrase: "robots with grippers and servos navigating rooms" },
    Topic { name: "mountaineering", terms: &["crampon", "belay", "summit", "ridge", "carabiner", "altitude", "icefall", "rope", "bivouac", "sherpa"], paraphrase: "climbers roped together reaching high summits" },
    Topic { name: "economics", terms: &["inflation", "interest", "recession", "tariff", "monetary", "liquidity", "bond", "deficit", "currency", "unemployment"], paraphrase: "central banks raising interest rates against inflation" },
    Topic { name: "ornithology", terms: &["warbler", "migration", "plumage", "nesting", "raptor", "birdsong", "feather", "binoculars", "wetland", "heron"], paraphrase: "migrating birds nesting in wetlands with bright plumage" },
    Topic { name: "pottery", terms: &["clay", "kiln", "glaze", "wheel", "stoneware", "porcelain", "slip", "firing", "earthenware", "trimming"], paraphrase: "potters throwing clay on wheels and firing kilns" },
    Topic { name: "oceanography", terms: &["salinity", "current", "upwelling", "plankton", "thermocline", "tide", "reef", "trench", "buoy", "estuary"], paraphrase: "ocean currents carrying plankton over coral reefs" },
    Topic { name: "databases", terms: &["index", "transaction", "replication", "query", "schema", "btree", "snapshot", "isolation", "shard", "vacuum"], paraphrase: "databases replicating transactions across shards" },
    Topic { name: "cinema", terms: &["director", "screenplay", "cinematography", "montage", "premiere", "soundtrack", "actor", "festival", "editing", "close-up"], paraphrase: "directors editing films for festival premieres" },
    Topic { name: "forestry", terms: &["canopy", "timber", "sapling", "understory", "logging", "wildfire", "conifer", "reforestation", "lumber", "hardwood"], paraphrase: "replanting conifer saplings after wildfires and logging" },
];

const FILLER: &[&str] = &["the", "study", "notes", "that", "many", "careful", "observers", "often", "describe", "how", "a", "long", "season", "changes", "what", "people", "expect", "and", "later", "report", "new", "results", "with", "several", "examples"];

fn rng(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *seed >> 33
}

/// Topic and text of each document.
fn corpus() -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut seed = 42u64;
    for (t, topic) in TOPICS.iter().enumerate() {
        for d in 0..8 {
            let mut words = Vec::new();
            for s in 0..6 {
                for _ in 0..(6 + rng(&mut seed) % 6) {
                    words.push(FILLER[rng(&mut seed) as usize % FILLER.len()].to_string());
                }
                // A document uses a rotating subset of its topic's terms...
                for k in 0..3 {
                    words.push(topic.terms[(d + s * 2 + k) % topic.terms.len()].to_string());
                }
                // ...and borrows a word from another topic now and then.
                if rng(&mut seed).is_multiple_of(3) {
                    let other = &TOPICS[(t + 1 + rng(&mut seed) as usize % (TOPICS.len() - 1)) % TOPICS.len()];
                    words.push(other.terms[rng(&mut seed) as usize % other.terms.len()].to_string());
                }
                if let Some(w) = words.last_mut() {
                    w.push('.');
                }
            }
            out.push((t, format!("{} notes {}", topic.name, d + 1), words.join(" ")));
        }
    }
    out
}

/// (topic, query text, query terms that grant gain 2).
fn queries() -> Vec<(usize, String, Vec<String>)> {
    let mut out = Vec::new();
    for (t, topic) in TOPICS.iter().enumerate() {
        let exact: Vec<String> = topic.terms[3..6].iter().map(|s| s.to_string()).collect();
        out.push((t, exact.join(" "), exact.clone()));
        out.push((t, misspell(topic.paraphrase), topic.terms[..3].iter().map(|s| s.to_string()).collect()));
    }
    out
}

/// Users misspell: long words lose one inner letter ("volcanic" → "volcnic").
/// Exact keyword matching misses these; character n-grams still overlap.
fn misspell(text: &str) -> String {
    text.split(' ')
        .map(|w| {
            let chars: Vec<char> = w.chars().collect();
            if chars.len() >= 7 {
                let drop = chars.len() / 2;
                chars.iter().enumerate().filter(|(i, _)| *i != drop).map(|(_, c)| *c).collect()
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn gain(doc: &(usize, String, String), q: &(usize, String, Vec<String>)) -> f64 {
    if doc.0 != q.0 {
        return 0.0;
    }
    let text = doc.2.to_lowercase();
    let hits = q.2.iter().filter(|t| text.split(|c: char| !c.is_alphanumeric() && c != '-').any(|w| w == t.as_str())).count();
    if hits >= 2 { 2.0 } else { 1.0 }
}

fn ndcg_at_10(ranked: &[f64], all: &[f64]) -> f64 {
    let dcg = |g: &[f64]| g.iter().take(10).enumerate().map(|(i, g)| (2f64.powf(*g) - 1.0) / ((i + 2) as f64).log2()).sum::<f64>();
    let mut ideal = all.to_vec();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg = dcg(&ideal);
    if idcg == 0.0 { 0.0 } else { dcg(ranked) / idcg }
}

#[tokio::main]
async fn main() {
    let dir = temp_dir("search-eval");
    let s = Server::start(&ServerOptions::new(dir).var("RETRY_MAX_ATTEMPTS", "1"));
    let docs = corpus();
    let qs = queries();
    let mut ids: HashMap<String, usize> = HashMap::new();
    for batch in docs.chunks(16).enumerate() {
        let subs = futures_util::future::join_all(batch.1.iter().map(|(t, title, body)| {
            let s = &s;
            async move { s.submit(title, body, Some(TOPICS[*t].name)).await }
        }))
        .await;
        for (i, (cid, run)) in subs.into_iter().enumerate() {
            let v = s.wait_run(&run, Duration::from_secs(120)).await;
            assert_eq!(v["status"], "completed", "{v}");
            ids.insert(cid, batch.0 * 16 + i);
        }
    }
    eprintln!("indexed {} documents; running {} queries", docs.len(), qs.len());
    println!("| mode | nDCG@10 | recall@10 |\n|---|---|---|");
    let mut table = Vec::new();
    for mode in ["vector", "keyword", "hybrid"] {
        let (mut ndcg, mut recall) = (0.0, 0.0);
        for q in &qs {
            let r = send(http().get(s.url("/api/search")).bearer_auth(&s.key).query(&[("q", q.1.as_str()), ("k", "10"), ("mode", mode)])).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let ranked: Vec<f64> = r.body["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| ids.get(x["content_id"].as_str().unwrap()).map(|d| gain(&docs[*d], q)).unwrap_or(0.0))
                .collect();
            let all: Vec<f64> = docs.iter().map(|d| gain(d, q)).collect();
            let relevant = all.iter().filter(|g| **g > 0.0).count() as f64;
            ndcg += ndcg_at_10(&ranked, &all);
            recall += ranked.iter().filter(|g| **g > 0.0).count() as f64 / relevant.min(10.0);
        }
        let n = qs.len() as f64;
        println!("| {mode} | {:.3} | {:.3} |", ndcg / n, recall / n);
        table.push((mode, ndcg / n));
    }
    let best_single = table[0].1.max(table[1].1);
    drop(s); // stop wrangler dev before deciding the exit code
    if table[2].1 <= best_single {
        eprintln!("hybrid does not beat the best single mode on this set");
        std::process::exit(1);
    }
}
