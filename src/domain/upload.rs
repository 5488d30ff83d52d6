//! Uploaded files: which types are accepted, where the original lives in the
//! object store, and what an item remembers about it ("Uploads and bulk
//! ingest" in DESIGN.md).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The longest `Content-Type` an upload may carry.
pub const CONTENT_TYPE_MAX_CHARS: usize = 200;

/// The file types an upload may have; their text is extracted by the run's
/// `validate` stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadType {
    Plain,
    Markdown,
    Html,
    Pdf,
}

impl UploadType {
    pub const ALL: [UploadType; 4] = [UploadType::Plain, UploadType::Markdown, UploadType::Html, UploadType::Pdf];

    pub fn mime(self) -> &'static str {
        match self {
            UploadType::Plain => "text/plain",
            UploadType::Markdown => "text/markdown",
            UploadType::Html => "text/html",
            UploadType::Pdf => "application/pdf",
        }
    }

    /// The type of a `Content-Type` value: its essence (before any `;`
    /// parameter such as `charset`), case-insensitively. `None` for any other,
    /// and for a value longer than [`CONTENT_TYPE_MAX_CHARS`] (it is stored
    /// and shown with the source).
    pub fn parse(content_type: &str) -> Option<UploadType> {
        if content_type.len() > CONTENT_TYPE_MAX_CHARS {
            return None;
        }
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        UploadType::ALL.into_iter().find(|t| t.mime() == essence)
    }

    /// Whether a default title can come from the file's first heading.
    pub fn has_headings(self) -> bool {
        matches!(self, UploadType::Markdown | UploadType::Html)
    }

    /// A short name for messages ("no extractable text in PDF upload").
    pub fn label(self) -> &'static str {
        match self {
            UploadType::Plain => "plain text",
            UploadType::Markdown => "Markdown",
            UploadType::Html => "HTML",
            UploadType::Pdf => "PDF",
        }
    }

    /// The message of a `415` for an upload of another type.
    pub fn refusal() -> String {
        let names: Vec<&str> = UploadType::ALL.iter().map(|t| t.mime()).collect();
        format!("an upload's content type must be one of {}", names.join(", "))
    }
}

/// What an item keeps about the original file of one version. `key` is its
/// object in the `UPLOADS` bucket; the view shows the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub content_type: String,
    pub bytes: u64,
    pub sha256: String,
    pub key: String,
}

/// A source as the content view shows it (the object key stays inside).
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceView {
    pub content_type: String,
    pub bytes: u64,
    pub sha256: String,
}

impl Source {
    /// A file of `bytes` bytes with that SHA-256 (hex), stored under [`object_key`].
    pub fn new(content_type: &str, bytes: u64, sha256: String, key: String) -> Source {
        Source { content_type: content_type.trim().to_string(), bytes, sha256, key }
    }

    /// Describes `body`, held whole, stored under [`object_key`].
    pub fn describe(content_type: &str, body: &[u8], key: String) -> Source {
        Source::new(content_type, body.len() as u64, super::sha256_hex(body), key)
    }

    pub fn upload_type(&self) -> Option<UploadType> {
        UploadType::parse(&self.content_type)
    }

    pub fn view(&self) -> SourceView {
        SourceView { content_type: self.content_type.clone(), bytes: self.bytes, sha256: self.sha256.clone() }
    }
}

/// Every object of one item starts with this, so a hard delete erases them
/// all with one listing (also objects of versions that were refused).
pub fn item_prefix(tenant: &str, content_id: Uuid) -> String {
    format!("uploads/{tenant}/{content_id}/")
}

/// One version's original. The key names the version's run, which the Worker
/// knows before the content actor numbers the version, so two concurrent
/// uploads of one item can never write the same object.
pub fn object_key(tenant: &str, content_id: Uuid, run_id: Uuid) -> String {
    format!("{}{run_id}", item_prefix(tenant, content_id))
}

/// The file name a `Content-Disposition` header gives (`filename="a.md"` or
/// `filename=a.md`), without its directory or extension; `None` without one.
pub fn disposition_name(header: &str) -> Option<String> {
    let raw = header.split(';').map(str::trim).find_map(|part| {
        let (k, v) = part.split_once('=')?;
        (k.trim().eq_ignore_ascii_case("filename")).then(|| v.trim().trim_matches('"').to_string())
    })?;
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let stem = match base.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => base,
    };
    let name: String = stem.chars().filter(|c| !c.is_control()).collect::<String>().trim().to_string();
    (!name.is_empty()).then_some(name)
}

/// How much of a file's start its default title is looked for in: a heading
/// further in is not a title, and a streamed upload is never read whole.
pub const TITLE_PREFIX_BYTES: usize = 64 * 1024;

/// The text of a file's first [`TITLE_PREFIX_BYTES`], without a character the
/// cut split in two.
pub fn title_prefix(bytes: &[u8]) -> String {
    let mut head = &bytes[..bytes.len().min(TITLE_PREFIX_BYTES)];
    if let Err(e) = std::str::from_utf8(head) {
        if e.error_len().is_none() {
            head = &head[..e.valid_up_to()];
        }
    }
    String::from_utf8_lossy(head).into_owned()
}

/// The title an upload gets when none is given: its first heading, else the
/// file name, else "Untitled upload", each without the characters a title
/// refuses (a zero-width joiner in an emoji, a soft hyphen). Cut to
/// `max_chars`.
pub fn default_title(heading: Option<String>, file_name: Option<String>, max_chars: usize) -> String {
    let usable = |t: Option<String>| {
        t.map(|t| crate::domain::content::plain_label(&t).chars().take(max_chars).collect::<String>().trim().to_string())
            .filter(|t| !t.is_empty())
    };
    usable(heading).or_else(|| usable(file_name)).unwrap_or_else(|| "Untitled upload".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_title_is_one_a_title_accepts() {
        let limits = crate::config::Limits::default();
        let cases = [
            (Some("Team 👩\u{200D}💻 notes".to_string()), None, "Team 👩💻 notes"),
            (Some("Co\u{AD}operation".to_string()), None, "Cooperation"),
            (Some("\u{200B}\u{200F}".to_string()), Some("re\u{AD}port".to_string()), "report"),
            (None, Some("\u{FEFF}".to_string()), "Untitled upload"),
        ];
        for (heading, file, want) in cases {
            let t = default_title(heading.clone(), file, 300);
            assert_eq!(t, want, "{heading:?}");
            assert!(crate::domain::content::title(&t, &limits).is_ok(), "{t:?}");
        }
    }

    #[test]
    fn content_types_by_essence_with_parameters() {
        assert_eq!(UploadType::parse("text/markdown"), Some(UploadType::Markdown));
        assert_eq!(UploadType::parse("Text/HTML; charset=utf-8"), Some(UploadType::Html));
        assert_eq!(UploadType::parse(" application/pdf "), Some(UploadType::Pdf));
        assert_eq!(UploadType::parse("text/plain;charset=us-ascii"), Some(UploadType::Plain));
        for other in ["image/png", "application/json", "", "text/plainx", "text/markdown+x", "text"] {
            assert_eq!(UploadType::parse(other), None, "{other}");
        }
        assert!(UploadType::refusal().contains("application/pdf"));
        let long = format!("text/plain; x={}", "a".repeat(CONTENT_TYPE_MAX_CHARS));
        assert_eq!(UploadType::parse(&long), None);
    }

    #[test]
    fn source_describes_bytes_and_keys_are_per_item() {
        let (id, run) = (Uuid::nil(), Uuid::from_u128(7));
        let s = Source::describe("text/plain", b"abc", object_key("acme", id, run));
        assert_eq!(s.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(s.bytes, 3);
        assert!(s.key.starts_with(&item_prefix("acme", id)));
        assert!(s.key.ends_with(&run.to_string()));
        assert_eq!(s.upload_type(), Some(UploadType::Plain));
        let v = serde_json::to_value(s.view()).unwrap();
        assert!(v.get("key").is_none());
    }

    #[test]
    fn titles_from_heading_file_name_or_default() {
        assert_eq!(disposition_name("attachment; filename=\"notes/Report 2024.md\"").as_deref(), Some("Report 2024"));
        assert_eq!(disposition_name("inline; filename=a.pdf").as_deref(), Some("a"));
        assert_eq!(disposition_name("inline; filename=.profile").as_deref(), Some(".profile"));
        assert_eq!(disposition_name("inline"), None);
        assert_eq!(disposition_name("attachment; filename=\"\""), None);
        assert_eq!(default_title(Some("Heading".into()), Some("file".into()), 300), "Heading");
        assert_eq!(default_title(None, Some("file".into()), 300), "file");
        assert_eq!(default_title(None, None, 300), "Untitled upload");
        assert_eq!(default_title(Some("é".repeat(10)), None, 4), "éééé");
    }

    #[test]
    fn title_prefix_is_bounded_and_cuts_on_a_character() {
        let mut file = vec![b'a'; TITLE_PREFIX_BYTES - 1];
        file.extend("é and more".as_bytes());
        let prefix = title_prefix(&file);
        assert_eq!(prefix.len(), TITLE_PREFIX_BYTES - 1, "the split é is left out, not replaced");
        assert!(!prefix.contains('\u{FFFD}'));
        assert_eq!(title_prefix(b"# Short\xff"), "# Short\u{FFFD}", "bad bytes inside stay replaced");
        assert!(UploadType::Markdown.has_headings() && !UploadType::Pdf.has_headings());
    }
}
