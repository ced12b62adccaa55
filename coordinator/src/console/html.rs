//! The few pieces every console page is made of: escaping, the page frame, status words and
//! human numbers. Plain strings: the pages are small, server-rendered and need no template
//! engine or JavaScript toolchain.

use std::fmt::Write as _;

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// A status a reader must not need colour to understand: a symbol and a word, with a class
/// that colours it for those who can see colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Fine.
    Good,
    /// Needs attention soon.
    Warn,
    /// Broken.
    Bad,
    /// In progress or waiting.
    Busy,
    /// Nothing known.
    Unknown,
}

/// `<span class="status bad">✖ failed</span>`.
pub(crate) fn status(status: Status, word: &str) -> String {
    let (class, symbol) = match status {
        Status::Good => ("good", "✔"),
        Status::Warn => ("warn", "⚠"),
        Status::Bad => ("bad", "✖"),
        Status::Busy => ("busy", "●"),
        Status::Unknown => ("unknown", "–"),
    };
    format!(
        "<span class=\"status {class}\"><span aria-hidden=\"true\">{symbol}</span> {}</span>",
        escape(word)
    )
}

/// A paragraph of class `class` with a status word before `text`: `⚠ waiting: no live worker…`.
pub(crate) fn flagged(class: &str, tone: Status, word: &str, text: &str) -> String {
    format!("<p class=\"{class}\">{} {}</p>", status(tone, word), escape(text))
}

/// A whole page: `title`, the navigation (with `current` marked for screen readers), `body`
/// inside `<main>`. `live` makes the script refresh `<main>` every two seconds.
pub(crate) fn page(title: &str, current: &str, live: bool, body: &str) -> String {
    let mut nav = String::new();
    for (href, label) in [("/ui", "Overview"), ("/ui/jobs", "Jobs"), ("/ui/cluster", "Cluster")] {
        let aria = if label == current { " aria-current=\"page\"" } else { "" };
        let _ = write!(nav, "<li><a href=\"{href}\"{aria}>{label}</a></li>");
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · bk</title>\
         <link rel=\"stylesheet\" href=\"/ui/assets/console.css\">\
         <script src=\"/ui/assets/console.js\" defer></script>{refresh}</head>\
         <body><a class=\"skip\" href=\"#content\">Skip to content</a>\
         <header><p class=\"brand\">bk</p><nav aria-label=\"Main\"><ul>{nav}</ul></nav>\
         <form method=\"post\" action=\"/ui/logout\"><button type=\"submit\">Sign out</button></form>\
         </header>\
         <main id=\"content\" data-live=\"{live}\" tabindex=\"-1\"><h1>{title}</h1>{body}</main>\
         <footer><p id=\"updated\"></p><p id=\"alert\" role=\"status\"></p></footer>\
         </body></html>\n",
        title = escape(title),
        // Without JavaScript, a live page still refreshes itself.
        refresh = if live {
            "<noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>"
        } else {
            ""
        },
    )
}

pub(crate) use bk_proto::support::human_bytes as bytes;

/// `3h 12m`, `45s`, `850ms`: the two largest units.
pub(crate) fn duration_ms(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let seconds = ms / 1000;
    let (days, hours, minutes, seconds) =
        (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60, seconds % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) => format!("{minutes}m {seconds}s"),
        (0, _, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}

/// A `<time>` with the UTC time, and how long ago (or until) it is from `now_ms`.
pub(crate) fn time(at_ms: u64, now_ms: u64) -> String {
    if at_ms == 0 {
        return "–".to_string();
    }
    let utc = chrono::DateTime::from_timestamp_millis(at_ms as i64)
        .map(|at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    let relative = if at_ms <= now_ms {
        format!("{} ago", duration_ms(now_ms - at_ms))
    } else {
        format!("in {}", duration_ms(at_ms - now_ms))
    };
    format!("<time datetime=\"{utc}\" title=\"{utc}\">{relative}</time>")
}

/// A link to a job's page, showing its id.
pub(crate) fn job_link(job_id: &str) -> String {
    let id = escape(job_id);
    format!("<a href=\"/ui/jobs/{id}\"><code>{id}</code></a>")
}

/// A link to a backup's page, showing its id.
pub(crate) fn backup_link(backup_id: &str) -> String {
    let id = escape(backup_id);
    format!("<a href=\"/ui/backups/{id}\"><code>{id}</code></a>")
}

/// A table with a caption (read out by screen readers), header cells with `scope`, and rows
/// of already-rendered cells.
pub(crate) fn table(id: &str, caption: &str, headers: &[&str], rows: &[Row]) -> String {
    let mut html = format!("<table id=\"{id}\"><caption>{}</caption><thead><tr>", escape(caption));
    for header in headers {
        let _ = write!(html, "<th scope=\"col\">{}</th>", escape(header));
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        let _ = write!(html, "<tr{}>", row.attributes);
        for cell in &row.cells {
            let _ = write!(html, "<td>{cell}</td>");
        }
        html.push_str("</tr>");
    }
    if rows.is_empty() {
        let _ = write!(html, "<tr><td colspan=\"{}\">None.</td></tr>", headers.len());
    }
    html.push_str("</tbody></table>");
    html
}

/// One table row: attributes (e.g. ` data-source="prod"`) and cells of HTML.
pub(crate) struct Row {
    /// Attributes of the `<tr>`, starting with a space.
    pub(crate) attributes: String,
    /// Rendered cells.
    pub(crate) cells: Vec<String>,
}

impl Row {
    /// A row whose `<tr>` carries `data-key="value"`, so tests and scripts find it.
    pub(crate) fn keyed(key: &str, value: &str, cells: Vec<String>) -> Self {
        Self { attributes: format!(" data-{key}=\"{}\"", escape(value)), cells }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_text_is_escaped_everywhere_it_can_break_out() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let html = page("<script>", "Overview", false, "");
        assert!(html.contains("<title>&lt;script&gt; · bk</title>"), "{html}");
        assert!(html.contains("<a href=\"/ui\" aria-current=\"page\">Overview</a>"), "{html}");
    }

    #[test]
    fn test_status_is_readable_without_colour() {
        assert!(status(Status::Bad, "failed").contains("✖</span> failed"));
    }

    #[test]
    fn test_numbers_read_as_a_person_would_say_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
        assert_eq!(duration_ms(850), "850ms");
        assert_eq!(duration_ms(45_000), "45s");
        assert_eq!(duration_ms(3_600_000 * 3 + 12 * 60_000), "3h 12m");
        assert_eq!(duration_ms(86_400_000 * 2 + 3_600_000), "2d 1h");
        assert!(time(1_000, 61_000).contains(">1m 0s ago<"));
        assert!(time(61_000, 1_000).contains(">in 1m 0s<"));
    }
}
