//! Text of an uploaded PDF (`POST /extract/pdf`), with `lopdf`: the pages'
//! text in page order, pages separated by a blank line (a paragraph break
//! for the Worker's chunker); a page that repeats an earlier one exactly
//! (the same streams and resources) is read once. A PDF without text
//! (scanned images) gives an empty string; the Worker turns that into a
//! readable run failure.

/// Largest PDF accepted: the Worker's default `MAX_UPLOAD_BYTES` (10 MB)
/// with room to raise it.
pub const MAX_PDF_BYTES: usize = 32 * 1024 * 1024;

/// Largest decompressed stream a page may use (its content, a font's
/// encoding); bounds a compression bomb.
const MAX_DECOMPRESSED_BYTES: usize = 8 * 1024 * 1024;

/// Most fonts a page may list and still be read: lopdf decodes every listed
/// font's encoding for each page, each up to [`MAX_DECOMPRESSED_BYTES`], so
/// a page listing thousands of fonts over one stream would inflate it
/// thousands of times within one page (past any check between pages). A
/// page over this is skipped; real pages use a few dozen at most.
const MAX_FONTS_PER_PAGE: usize = 32;

/// Most pages read. Each page's extraction walks the page tree again
/// (lopdf), so the work grows with pages²; a book is well within this.
pub const MAX_PAGES: usize = 5_000;

/// Longest a document is read. A page's streams are bounded, but pages can
/// share them (a small file whose thousand pages each inflate the same
/// stream to its cap): the whole document gets a deadline, so one upload cannot hold
/// the analyzer that every tenant's runs share.
pub const READ_TIME: std::time::Duration = std::time::Duration::from_secs(20);

/// Most text one PDF may give, in bytes, when the caller names no lower
/// cap. Pages are bounded one by one; this bounds them together: a small
/// file whose pages each inflate to megabytes of text would otherwise be
/// held whole here and in the caller (the Worker reads the reply whole).
pub const MAX_TEXT_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PdfError {
    #[error("not a readable PDF: {0}")]
    Unreadable(String),
    #[error("the PDF is encrypted")]
    Encrypted,
    #[error("the PDF is too large to read: {0}")]
    TooLarge(String),
}

/// The text of `bytes`, refused as too large once it passes `max_text`
/// bytes (pages and their separators).
pub fn extract_text(bytes: &[u8], max_text: usize) -> Result<String, PdfError> {
    if !bytes.starts_with(b"%PDF-") {
        return Err(PdfError::Unreadable("no %PDF- header".into()));
    }
    let doc = lopdf::Document::load_mem(bytes).map_err(|e| PdfError::Unreadable(e.to_string()))?;
    if doc.is_encrypted() {
        return Err(PdfError::Encrypted);
    }
    read_pages(&doc, std::time::Instant::now() + READ_TIME, max_text.min(MAX_TEXT_BYTES))
}

/// Every page's text until `deadline` and while it stays within
/// `max_text` bytes, pages in order.
fn read_pages(doc: &lopdf::Document, deadline: std::time::Instant, max_text: usize) -> Result<String, PdfError> {
    let page_ids = doc.get_pages();
    if page_ids.len() > MAX_PAGES {
        return Err(PdfError::TooLarge(format!("{} pages; at most {MAX_PAGES} are read", page_ids.len())));
    }
    let mut seen: std::collections::HashSet<(Vec<lopdf::ObjectId>, Vec<lopdf::ObjectId>, Option<usize>)> =
        std::collections::HashSet::new();
    let mut pages: Vec<String> = Vec::new();
    let mut total = 0usize;
    for (number, id) in &page_ids {
        if std::time::Instant::now() > deadline {
            return Err(PdfError::TooLarge(format!("reading it takes longer than {} s", READ_TIME.as_secs())));
        }
        // A page with the same streams and resources as an earlier page says
        // nothing new (its text is the same). A resources dictionary written
        // inline (in the page or an ancestor) is told apart by where it is.
        let (inline, resources) = doc.get_page_resources(*id).unwrap_or((None, Vec::new()));
        let inline = inline.map(|d| d as *const lopdf::Dictionary as usize);
        if !seen.insert((doc.get_page_contents(*id), resources, inline)) {
            continue;
        }
        if doc.get_page_fonts(*id).map_or(0, |f| f.len()) > MAX_FONTS_PER_PAGE {
            continue;
        }
        // A page whose text cannot be decoded is skipped, not fatal: the
        // other pages may still hold the document's text.
        let text = doc.extract_text_with_limit(&[*number], MAX_DECOMPRESSED_BYTES).unwrap_or_default();
        let text = tidy(&text);
        if !text.is_empty() {
            total += text.len() + if pages.is_empty() { 0 } else { 2 };
            if total > max_text {
                return Err(PdfError::TooLarge(format!("its text passes {max_text} bytes (by page {number})")));
            }
            pages.push(text);
        }
    }
    Ok(pages.join("\n\n"))
}

/// One line per text line, runs of spaces collapsed, empty lines dropped.
fn tidy(page: &str) -> String {
    page.lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use lopdf::content::{Content, Operation};
    use lopdf::{dictionary, Document, Object, Stream};

    /// A PDF built with lopdf's writer: one page per entry, each a Helvetica
    /// text object (an empty entry is a page without text).
    pub(crate) fn generated(pages: &[&str]) -> Vec<u8> {
        assembled(pages, &(0..pages.len()).collect::<Vec<_>>())
    }

    /// One content stream per entry of `texts`; page `i` draws stream `pages[i]`.
    fn assembled(texts: &[&str], pages: &[usize]) -> Vec<u8> {
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font = doc.add_object(dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica" });
        let resources = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font } });
        let streams: Vec<_> = texts
            .iter()
            .map(|text| {
                let ops = if text.is_empty() {
                    vec![]
                } else {
                    vec![
                        Operation::new("BT", vec![]),
                        Operation::new("Tf", vec!["F1".into(), 12.into()]),
                        Operation::new("Td", vec![72.into(), 720.into()]),
                        Operation::new("Tj", vec![Object::string_literal(*text)]),
                        Operation::new("ET", vec![]),
                    ]
                };
                doc.add_object(Stream::new(dictionary! {}, Content { operations: ops }.encode().unwrap()))
            })
            .collect();
        let kids: Vec<Object> = pages
            .iter()
            .map(|&i| doc.add_object(dictionary! { "Type" => "Page", "Parent" => pages_id, "Contents" => streams[i] }).into())
            .collect();
        let count = kids.len() as i64;
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! {
                "Type" => "Pages", "Kids" => kids, "Count" => count, "Resources" => resources,
                "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
            }),
        );
        let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
        doc.trailer.set("Root", catalog);
        doc.compress();
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        out
    }

    #[test]
    fn extracts_each_pages_text_in_order() {
        let pdf = generated(&["Tidal turbines spin in the strait.", "", "Second page   of text."]);
        assert_eq!(extract_text(&pdf, MAX_TEXT_BYTES).unwrap(), "Tidal turbines spin in the strait.\n\nSecond page of text.");
    }

    /// Pages of text past the caller's cap, all told: refused as too large
    /// (422, a terminal refusal), not read whole and handed on.
    #[test]
    fn text_past_the_cap_is_refused() {
        let page = "word ".repeat(200);
        let pages: Vec<&str> = vec![page.as_str(); 10];
        let pdf = generated(&pages);
        let whole = extract_text(&pdf, MAX_TEXT_BYTES).unwrap();
        assert!(whole.len() > 5 * 999, "{}", whole.len());
        assert_eq!(extract_text(&pdf, whole.len()).unwrap(), whole, "exactly at the cap is read");
        assert!(matches!(extract_text(&pdf, whole.len() - 1), Err(PdfError::TooLarge(_))));
        assert!(matches!(extract_text(&pdf, 3_000), Err(PdfError::TooLarge(e)) if e.contains("page")));
    }

    /// `pages` pages that all draw one content stream showing `text`.
    fn sharing_one_stream(pages: usize, text: &str) -> Vec<u8> {
        assembled(&[text], &vec![0; pages])
    }

    /// A small file whose pages all inflate one stream is read once, not
    /// once per page (the analyzer is every tenant's).
    #[test]
    fn pages_sharing_a_stream_are_read_once() {
        let pdf = sharing_one_stream(2_000, "One shared page.");
        let started = std::time::Instant::now();
        assert_eq!(extract_text(&pdf, MAX_TEXT_BYTES).unwrap(), "One shared page.");
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    }

    /// lopdf decodes every font a page lists, for each page: a page listing
    /// more than a page needs is not read (the others are).
    #[test]
    fn a_page_listing_too_many_fonts_is_skipped() {
        let mut doc = Document::load_mem(&generated(&["First page.", "Second page."])).unwrap();
        let pages = doc.get_pages();
        let font = doc.add_object(dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica" });
        let mut fonts = lopdf::Dictionary::new();
        for i in 0..=MAX_FONTS_PER_PAGE {
            fonts.set(format!("F{i}"), font);
        }
        let second = doc.get_object_mut(pages[&2]).unwrap().as_dict_mut().unwrap();
        second.set("Resources", dictionary! { "Font" => fonts });
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        assert_eq!(extract_text(&out, MAX_TEXT_BYTES).unwrap(), "First page.");
    }

    #[test]
    fn a_document_past_its_page_cap_or_its_time_is_too_large() {
        let many = sharing_one_stream(MAX_PAGES + 1, "x");
        assert!(matches!(extract_text(&many, MAX_TEXT_BYTES), Err(PdfError::TooLarge(_))));
        let doc = Document::load_mem(&generated(&["First.", "Second."])).unwrap();
        let past = std::time::Instant::now() - std::time::Duration::from_millis(1);
        assert!(matches!(read_pages(&doc, past, MAX_TEXT_BYTES), Err(PdfError::TooLarge(_))));
        assert!(read_pages(&doc, std::time::Instant::now() + READ_TIME, MAX_TEXT_BYTES).is_ok());
    }

    #[test]
    fn a_pdf_without_text_is_empty_and_garbage_is_refused() {
        assert_eq!(extract_text(&generated(&[""]), MAX_TEXT_BYTES).unwrap(), "");
        assert!(matches!(extract_text(b"hello", MAX_TEXT_BYTES), Err(PdfError::Unreadable(_))));
        assert!(matches!(extract_text(b"%PDF-1.4\n garbage", MAX_TEXT_BYTES), Err(PdfError::Unreadable(_))));
        assert!(matches!(extract_text(b"", MAX_TEXT_BYTES), Err(PdfError::Unreadable(_))));
    }
}
