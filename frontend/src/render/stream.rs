//! PowerShell's output streams, as named by a document's `S="…"` attribute, and how each is shown.

/// A stream. Writers spell the names differently (`pwsh -OutputFormat xml` writes `Error` but `warning`,
/// `verbose`, `progress`), so they are matched without regard to case.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Success output (also what an item without `S` is).
    Output,
    /// Error records.
    Error,
    /// `WARNING: …`
    Warning,
    /// `VERBOSE: …`
    Verbose,
    /// `DEBUG: …`
    Debug,
    /// Write-Information / Write-Host.
    Information,
    /// Progress records.
    Progress,
    /// A name PowerShell does not use, kept as written.
    Other(String),
}

impl Stream {
    /// The stream an `S` attribute names; no attribute is the output stream.
    pub fn from_attr(attr: Option<&str>) -> Stream {
        let Some(name) = attr else { return Stream::Output };
        [
            ("Output", Stream::Output),
            ("Error", Stream::Error),
            ("Warning", Stream::Warning),
            ("Verbose", Stream::Verbose),
            ("Debug", Stream::Debug),
            ("Information", Stream::Information),
            ("Progress", Stream::Progress),
        ]
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
        .map_or_else(|| Stream::Other(name.to_owned()), |(_, s)| s)
    }

    /// The canonical name, for the Stream column.
    pub fn name(&self) -> &str {
        match self {
            Stream::Output => "Output",
            Stream::Error => "Error",
            Stream::Warning => "Warning",
            Stream::Verbose => "Verbose",
            Stream::Debug => "Debug",
            Stream::Information => "Information",
            Stream::Progress => "Progress",
            Stream::Other(name) => name,
        }
    }

    /// The CSS class that colours it (style.css: `.stream-*`).
    pub fn css_class(&self) -> &'static str {
        match self {
            Stream::Output => "stream-output",
            Stream::Error => "stream-error",
            Stream::Warning => "stream-warning",
            Stream::Verbose => "stream-verbose",
            Stream::Debug => "stream-debug",
            Stream::Information => "stream-information",
            Stream::Progress => "stream-progress",
            Stream::Other(_) => "stream-other",
        }
    }

    /// What PowerShell's host prints before a message of this stream.
    pub fn prefix(&self) -> &'static str {
        match self {
            Stream::Warning => "WARNING: ",
            Stream::Verbose => "VERBOSE: ",
            Stream::Debug => "DEBUG: ",
            _ => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_without_case() {
        assert_eq!(Stream::from_attr(None), Stream::Output);
        assert_eq!(Stream::from_attr(Some("Error")), Stream::Error);
        assert_eq!(Stream::from_attr(Some("progress")), Stream::Progress);
        assert_eq!(Stream::from_attr(Some("WARNING")), Stream::Warning);
        assert_eq!(Stream::from_attr(Some("host")), Stream::Other("host".into()));
        assert_eq!(Stream::from_attr(Some("host")).name(), "host");
    }

    #[test]
    fn prefixes_like_the_console_host() {
        assert_eq!(Stream::Warning.prefix(), "WARNING: ");
        assert_eq!(Stream::Error.prefix(), "");
        assert_eq!(Stream::Error.css_class(), "stream-error");
    }
}
