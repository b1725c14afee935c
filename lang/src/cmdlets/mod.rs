//! The cmdlets psgate's prompt runs: their signatures (PowerShell's names, aliases, positions, parameter sets and
//! pipeline input, from PowerShell's own declarations) and what each does.

pub(crate) mod remoting;
pub(crate) mod utility;

use crate::bind::{Bound, Signature};
use crate::eval::{Ctx, R, Sink};

/// A cmdlet.
pub(crate) struct Cmdlet {
    /// What binding needs.
    pub sig: Signature,
    /// Its aliases (`nsn`).
    pub aliases: &'static [&'static str],
    /// One line for Get-Help and Get-Command.
    pub synopsis: &'static str,
    /// What it does.
    pub run: fn(&mut Ctx<'_>, &Bound, &mut Sink<'_>) -> R<()>,
}

impl std::fmt::Debug for Cmdlet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.sig.name)
    }
}

/// Every cmdlet.
pub(crate) fn all() -> impl Iterator<Item = &'static Cmdlet> {
    remoting::CMDLETS.iter().chain(utility::CMDLETS.iter()).chain(crate::jobs::CMDLETS.iter()).chain(crate::implicit::CMDLETS.iter()).chain(crate::quota::CMDLETS.iter()).chain(crate::wsman::CMDLETS.iter())
}

/// The cmdlet a name or alias names (ignoring case; a module qualifier such as `Microsoft.PowerShell.Core\` is
/// allowed).
pub(crate) fn find(name: &str) -> Option<&'static Cmdlet> {
    let name = name.rsplit('\\').next().unwrap_or(name);
    all().find(|c| c.sig.name.eq_ignore_ascii_case(name) || c.aliases.iter().any(|a| a.eq_ignore_ascii_case(name)))
}

/// Every command name and alias, for completion and Get-Command: `(name, Some(target))` for an alias.
pub fn names() -> Vec<(&'static str, Option<&'static str>)> {
    let mut out: Vec<(&'static str, Option<&'static str>)> = Vec::new();
    for c in all() {
        out.push((c.sig.name, None));
        out.extend(c.aliases.iter().map(|a| (*a, Some(c.sig.name))));
    }
    out
}

/// Names like a mistyped one, best first (did-you-mean): an edit distance within a third of the name's length,
/// or the same name with its noun or verb mistyped.
pub(crate) fn similar(name: &str) -> Vec<&'static str> {
    let lower = name.to_lowercase();
    let limit = (lower.chars().count() / 3).clamp(1, 4);
    let mut found: Vec<(usize, &'static str)> = all()
        .map(|c| c.sig.name)
        .filter_map(|n| {
            let d = distance(&lower, &n.to_lowercase());
            (d <= limit).then_some((d, n))
        })
        .collect();
    found.sort();
    found.dedup_by_key(|(_, n)| *n);
    // Only the closest: a near miss is not a list of everything within reach.
    let best = found.first().map_or(0, |(d, _)| *d);
    found.into_iter().take_while(|(d, _)| *d == best).take(3).map(|(_, n)| n).collect()
}

/// Levenshtein distance (optimal string alignment: a swap of two letters is one edit).
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > 8 {
        return usize::MAX;
    }
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}
