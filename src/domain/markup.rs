//! Text of uploaded Markdown and HTML files, for the run's `validate` stage.
//! (Here, not in `nlp`: the benchmark peer compiles `src/nlp` on its own.)
//!
//! Scripts, styles, comments and tags are dropped and character references
//! decoded; headings, paragraphs, list items and other blocks end with a blank
//! line, which the chunker treats as a sentence break. Markdown is parsed by
//! `pulldown-cmark` (HTML inside it goes through the HTML path). HTML is
//! handled by a tolerant scanner rather than a full HTML5 parser (html5ever
//! alone is several times this crate's wasm size): malformed markup never
//! fails, it only yields less tidy text.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use crate::domain::upload::UploadType;

/// The body text of an uploaded text file; `None` for a PDF (the analyzer
/// extracts that). Whitespace-only results are empty strings.
pub fn to_text(kind: UploadType, text: &str) -> Option<String> {
    match kind {
        UploadType::Plain => Some(text.trim().to_string()),
        UploadType::Markdown => Some(markdown_to_text(text)),
        UploadType::Html => Some(html_to_text(text)),
        UploadType::Pdf => None,
    }
}

/// The file's first heading: Markdown's first `#` heading, HTML's `<title>`
/// or first `<h1>`..`<h6>`. Used as the default title of an upload.
pub fn first_heading(kind: UploadType, text: &str) -> Option<String> {
    let heading = match kind {
        UploadType::Markdown => markdown_heading(text),
        UploadType::Html => html_heading(text),
        UploadType::Plain | UploadType::Pdf => None,
    }?;
    let line = heading.split_whitespace().collect::<Vec<_>>().join(" ");
    (!line.is_empty()).then_some(line)
}

/// Collects text into paragraphs: whitespace inside one collapses to single
/// spaces, and each paragraph ends with a blank line.
#[derive(Default)]
struct Paragraphs {
    out: String,
    line: String,
}

impl Paragraphs {
    fn text(&mut self, s: &str) {
        for (i, word) in s.split(char::is_whitespace).enumerate() {
            if i > 0 && !self.line.ends_with(' ') && !self.line.is_empty() {
                self.line.push(' ');
            }
            self.line.push_str(word);
        }
    }

    fn space(&mut self) {
        if !self.line.is_empty() && !self.line.ends_with(' ') {
            self.line.push(' ');
        }
    }

    fn line_break(&mut self) {
        // In place: a copy of the line per break is quadratic in a long one.
        let kept = self.line.trim_end().len();
        self.line.truncate(kept);
        if !self.line.is_empty() {
            self.line.push('\n');
        }
    }

    fn end_block(&mut self) {
        let para = self.line.trim();
        if !para.is_empty() {
            if !self.out.is_empty() {
                self.out.push_str("\n\n");
            }
            self.out.push_str(para);
        }
        self.line.clear();
    }

    fn finish(mut self) -> String {
        self.end_block();
        self.out
    }
}

pub fn markdown_to_text(md: &str) -> String {
    let mut p = Paragraphs::default();
    // Consecutive HTML events (a block or inline tags) are converted together,
    // so a `<script>` spanning several lines is dropped whole.
    let mut html = String::new();
    // A dropped element opened by inline HTML whose content comes as text
    // events (`Hello <script>x()</script>` is HTML, text, HTML): that text
    // is skipped until the HTML that closes it.
    let mut dropping: Option<&str> = None;
    let flush = |html: &mut String, p: &mut Paragraphs| {
        if !html.is_empty() {
            let text = html_to_text(html);
            let mut blocks = text.split("\n\n").peekable();
            while let Some(block) = blocks.next() {
                p.text(block);
                if blocks.peek().is_some() {
                    p.end_block();
                }
            }
            html.clear();
        }
    };
    for event in Parser::new_ext(md, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH) {
        if let Event::Html(h) | Event::InlineHtml(h) = &event {
            match dropping {
                // Inside it, only the HTML that closes it counts (with what
                // follows the close).
                Some(name) => {
                    if let Some(close) = closing_tag_end(h, name) {
                        html.push_str(&format!("</{name}>"));
                        html.push_str(&h[close..]);
                        dropping = open_dropped(&h[close..]);
                    }
                }
                // What came before is closed: only this event can open one.
                None => {
                    html.push_str(h);
                    dropping = open_dropped(h);
                }
            }
            continue;
        }
        if dropping.is_some() && matches!(event, Event::Text(_) | Event::Code(_)) {
            continue;
        }
        flush(&mut html, &mut p);
        match event {
            Event::Text(t) | Event::Code(t) => p.text(&t),
            Event::SoftBreak => p.space(),
            Event::HardBreak => p.line_break(),
            Event::Start(Tag::Item) | Event::Start(Tag::TableCell) => p.space(),
            Event::End(
                TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::Item
                | TagEnd::CodeBlock
                | TagEnd::BlockQuote(_)
                | TagEnd::TableRow
                | TagEnd::TableHead
                | TagEnd::HtmlBlock,
            ) => p.end_block(),
            Event::Rule => p.end_block(),
            _ => {}
        }
    }
    flush(&mut html, &mut p);
    p.finish()
}

fn markdown_heading(md: &str) -> Option<String> {
    let mut inside = false;
    let mut heading = String::new();
    for event in Parser::new(md) {
        match event {
            Event::Start(Tag::Heading { .. }) => inside = true,
            Event::End(TagEnd::Heading(_)) => return Some(heading),
            Event::Text(t) | Event::Code(t) if inside => heading.push_str(&t),
            _ => {}
        }
    }
    None
}

/// Elements whose content is never text. Not `head`: its end tag may be
/// left out (HTML5), and then its skip would take the whole body; what is
/// in it besides these (`meta`, `link`, `base`) holds no text.
const DROPPED: [&str; 7] = ["script", "style", "template", "noscript", "title", "svg", "iframe"];

/// Elements that end a paragraph where they open or close.
const BLOCKS: [&str; 32] = [
    "p", "div", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul", "ol", "dl", "dt", "dd", "tr", "table",
    "section", "article", "header", "footer", "nav", "aside", "main", "blockquote", "pre", "figure", "figcaption",
    "form", "body", "address",
];

/// Just past the tag in `html` that closes the dropped element `name`.
fn closing_tag_end(html: &str, name: &str) -> Option<usize> {
    close_after(html, &html.to_ascii_lowercase(), 0, name)
}

/// The dropped element that `html` opens and does not close, if any: what
/// follows it is its content until its end tag.
fn open_dropped(html: &str) -> Option<&'static str> {
    // Lowercased once, as `html_to_text` does (see `close_after`).
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    while let Some(off) = html[i..].find('<') {
        let at = i + off;
        let Some((name, closing, len)) = tag_at(&html[at..]) else {
            i = at + 1;
            continue;
        };
        i = at + len;
        let Some(dropped) = DROPPED.iter().find(|d| **d == name) else { continue };
        if closing || html[at..i].ends_with("/>") {
            continue;
        }
        match close_after(html, &lower, i, dropped) {
            Some(end) => i = end,
            None => return Some(dropped),
        }
    }
    None
}

/// One tag at `s[0] == '<'`: its lowercase name, whether it closes, and its
/// length. `None` when `<` does not start a tag (it is then text).
fn tag_at(s: &str) -> Option<(String, bool, usize)> {
    let rest = &s[1..];
    let (closing, name_start) = if rest.starts_with('/') { (true, 2) } else { (false, 1) };
    let name: String =
        s[name_start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect::<String>().to_ascii_lowercase();
    if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    // The tag ends at the first '>' outside a quoted attribute value.
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices().skip(1) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some((name, closing, i + 1)),
            _ => {}
        }
    }
    Some((name, closing, s.len()))
}

/// The end of a dropped element's content that starts at `from`: just past
/// its closing tag, or the end of the input if it is never closed. `lower`
/// is `html` lowercased once (ASCII, so offsets agree): lowercasing the rest
/// per element would be quadratic in a file of many small `<svg>`s.
fn skip_element(html: &str, lower: &str, from: usize, name: &str) -> usize {
    close_after(html, lower, from, name).unwrap_or(html.len())
}

/// Just past the first tag closing `name` at or after `from`, if there is
/// one (`lower` as for [`skip_element`]).
fn close_after(html: &str, lower: &str, from: usize, name: &str) -> Option<usize> {
    let needle = format!("</{name}");
    let at = from + lower[from..].find(&needle)?;
    Some(at + tag_at(&html[at..]).map(|(_, _, len)| len).unwrap_or(needle.len()))
}

pub fn html_to_text(html: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let mut p = Paragraphs::default();
    let mut i = 0;
    let mut text_start = 0;
    let flush_text = |p: &mut Paragraphs, from: usize, to: usize| {
        if to > from {
            p.text(&decode_entities(&html[from..to]));
        }
    };
    while let Some(off) = html[i..].find('<') {
        let at = i + off;
        let rest = &html[at..];
        if let Some(after) = rest.strip_prefix("<!--") {
            flush_text(&mut p, text_start, at);
            i = at + 4 + after.find("-->").map(|e| e + 3).unwrap_or(after.len());
            text_start = i;
            continue;
        }
        if rest.starts_with("<!") || rest.starts_with("<?") {
            flush_text(&mut p, text_start, at);
            i = at + rest.find('>').map(|e| e + 1).unwrap_or(rest.len());
            text_start = i;
            continue;
        }
        let Some((name, closing, len)) = tag_at(rest) else {
            i = at + 1;
            continue;
        };
        flush_text(&mut p, text_start, at);
        i = at + len;
        if !closing && DROPPED.contains(&name.as_str()) && !rest[..len].ends_with("/>") {
            i = skip_element(html, &lower, i, &name);
            p.space();
        } else if BLOCKS.contains(&name.as_str()) {
            p.end_block();
        } else if matches!(name.as_str(), "td" | "th") {
            p.space();
        }
        text_start = i;
    }
    flush_text(&mut p, text_start, html.len());
    p.finish()
}

fn html_heading(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    for tag in ["title", "h1", "h2", "h3", "h4", "h5", "h6"] {
        let Some(open) = lower.find(&format!("<{tag}")) else { continue };
        let Some((_, _, len)) = tag_at(&html[open..]) else { continue };
        let inner_start = open + len;
        let inner_end = lower[inner_start..].find(&format!("</{tag}")).map(|e| inner_start + e).unwrap_or(html.len());
        let text = html_to_text(&html[inner_start..inner_end]);
        if !text.trim().is_empty() {
            return Some(text);
        }
    }
    None
}

/// Decodes character references: numeric ones and the named ones common in
/// prose. An unknown or malformed reference stays as it was written.
pub fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = tail[1..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '#')).map(|e| e + 1).unwrap_or(tail.len());
        let name = &tail[1..end];
        let decoded = decode_reference(name);
        match decoded {
            Some(c) => {
                out.push(c);
                let consumed = if tail[end..].starts_with(';') { end + 1 } else { end };
                rest = &tail[consumed..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn decode_reference(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        return char::from_u32(code).filter(|c| *c != '\0');
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "mdash" => '—',
        "ndash" => '–',
        "hellip" => '…',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "euro" => '€',
        "eacute" => 'é',
        "egrave" => 'è',
        "uuml" => 'ü',
        "ouml" => 'ö',
        "auml" => 'ä',
        "szlig" => 'ß',
        "middot" => '·',
        "bull" => '•',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_drops_scripts_styles_comments_and_tags() {
        let html = r#"<!DOCTYPE html><html><head><title>Ignored head</title><style>p{color:red}</style></head>
<body><h1>Tidal  energy</h1><!-- a <p>comment</p> -->
<p>The <b>moon</b> pulls&nbsp;the sea &amp; the &quot;tide&quot; turns &#8212; twice a day&#x21;</p>
<script type="text/javascript">var x = "<p>not text</p>";</script>
<ul><li>first</li><li>second</li></ul><p>a < b and c > d</p><img src="x.png" alt="a > b"></body></html>"#;
        let text = html_to_text(html);
        assert_eq!(
            text,
            "Tidal energy\n\nThe moon pulls the sea & the \"tide\" turns — twice a day!\n\nfirst\n\nsecond\n\na < b and c > d"
        );
    }

    #[test]
    fn html_is_tolerant_of_broken_markup() {
        assert_eq!(html_to_text("<p>open <i>never closed"), "open never closed");
        assert_eq!(html_to_text("<script>alert(1)"), "");
        assert_eq!(html_to_text("<SCRIPT>x</SCRIPT >after"), "after");
        assert_eq!(html_to_text("<!-- unterminated"), "");
        assert_eq!(html_to_text("x <"), "x <");
        assert_eq!(html_to_text("&bogus; &amp &#xZZ; &#0;"), "&bogus; & &#xZZ; &#0;");
        assert_eq!(html_to_text("<p>é ünï 日本</p>"), "é ünï 日本");
        assert_eq!(html_to_text(""), "");
    }

    /// HTML5 lets `</head>` be left out; the body's text is still the text.
    #[test]
    fn html_without_a_head_end_keeps_its_body() {
        let html = "<!doctype html><html><head><meta charset=utf-8><title>Report</title><body><h1>Quarterly</h1><p>Revenue grew.</p>";
        assert_eq!(html_to_text(html), "Quarterly\n\nRevenue grew.");
        assert_eq!(html_to_text("<head><title>T</title><link rel=icon href=x><script>s()</script></head><body>x</body>"), "x");
    }

    /// Inline HTML in Markdown comes as HTML, text, HTML: the text between a
    /// dropped element's tags is dropped too.
    #[test]
    fn markdown_drops_inline_scripts_and_styles() {
        assert_eq!(markdown_to_text("Hello <script>steal()</script> world"), "Hello world");
        assert_eq!(markdown_to_text("Text <style>p{color:red}</style> more"), "Text more");
        assert_eq!(markdown_to_text("A <SCRIPT type=x>one `two` three</SCRIPT> b <b>kept</b>"), "A b kept");
        assert_eq!(markdown_to_text("x <script/> y"), "x y");
    }

    #[test]
    fn markdown_keeps_headings_and_paragraphs() {
        let md = "# Solar sails\n\nA sail *pushed* by light,\nslowly.\n\n- one\n- two `code`\n\n```\nlet x = 1;\n```\n\n<script>\nsteal()\n</script>\n\nEnd with <b>bold</b> &amp; more.";
        assert_eq!(
            markdown_to_text(md),
            "Solar sails\n\nA sail pushed by light, slowly.\n\none\n\ntwo code\n\nlet x = 1;\n\nEnd with bold & more."
        );
    }

    #[test]
    fn headings_for_default_titles() {
        assert_eq!(first_heading(UploadType::Markdown, "intro\n\n## The   *real* title\n# later").as_deref(), Some("The real title"));
        assert_eq!(first_heading(UploadType::Markdown, "no heading"), None);
        assert_eq!(first_heading(UploadType::Html, "<title> Page &amp; co </title><h1>H</h1>").as_deref(), Some("Page & co"));
        assert_eq!(first_heading(UploadType::Html, "<h2 class='x'>Second</h2>").as_deref(), Some("Second"));
        assert_eq!(first_heading(UploadType::Plain, "# not parsed"), None);
    }

    /// Inputs that made extraction quadratic: each dropped element
    /// lowercased the rest of the file, each hard break copied its line.
    /// At these sizes the quadratic versions copy tens of gigabytes.
    #[test]
    fn many_small_dropped_elements_and_hard_breaks_stay_linear() {
        let html = format!("<p>start</p>{}<p>end</p>", "<svg></svg>".repeat(100_000));
        assert_eq!(html_to_text(&html), "start\n\nend");
        let md = format!("{}end", "word\\\n".repeat(100_000));
        assert_eq!(markdown_to_text(&format!("{}end", "<b>".repeat(100_000))), "end");
        assert_eq!(markdown_to_text(&format!("x {} end", "<svg></svg>".repeat(100_000))), "x end");
        let text = markdown_to_text(&md);
        assert_eq!(text, format!("{}end", "word\n".repeat(100_000)));
    }

    #[test]
    fn no_text_files_give_empty_text() {
        assert_eq!(to_text(UploadType::Html, "<script>only()</script><style>a{}</style>").as_deref(), Some(""));
        assert_eq!(to_text(UploadType::Markdown, "   \n\n").as_deref(), Some(""));
        assert_eq!(to_text(UploadType::Plain, " \n ").as_deref(), Some(""));
        assert_eq!(to_text(UploadType::Pdf, "%PDF"), None);
    }
}
