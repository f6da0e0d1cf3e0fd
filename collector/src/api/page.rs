//! Keyset paging: every list answers at most `page_size` items in a stable
//! order and a `next_page_token` to go on from the last one.
//!
//! The token carries the last key given and a digest of the request's
//! filters: a token is refused for another query, and a page starts after
//! its key whatever was added or removed meanwhile, so a walk page by page
//! while data arrives sees nothing twice and misses nothing that existed
//! when it began (new items after the last key appear on a later page).

use base64::Engine as _;
use sha2::Digest as _;

use super::ApiError;

/// Items in a page when the caller does not say.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Most items in a page, whatever the caller asks.
pub const MAX_PAGE_SIZE: usize = 1_000;

/// Where a page starts and how long it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Items to give (1 to [`MAX_PAGE_SIZE`]).
    pub size: usize,
    /// Give only items whose key is greater than this.
    pub after: Option<String>,
    filters: String,
}

impl Page {
    /// Reads `page_size` and `page_token` of a request whose filters are
    /// `filters` (any text that differs when the query differs).
    pub fn new(page_size: u32, page_token: &str, filters: &str) -> Result<Page, ApiError> {
        let size = match page_size as usize {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let filters = digest(filters);
        if page_token.is_empty() {
            return Ok(Page {
                size,
                after: None,
                filters,
            });
        }
        let bad = || {
            ApiError::invalid(
                "page_token",
                "not a token this collector gave for this query; start again without it",
            )
        };
        if page_token.len() > 1024 {
            return Err(bad());
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(page_token)
            .map_err(|_| bad())?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        let (f, key) = text.split_once('\n').ok_or_else(bad)?;
        if f != filters {
            return Err(bad());
        }
        Ok(Page {
            size,
            after: Some(key.to_string()),
            filters,
        })
    }

    /// Whether an item with `key` belongs after this page's start.
    pub fn wants(&self, key: &str) -> bool {
        self.after.as_deref().is_none_or(|a| key > a)
    }

    /// The page of `items` (in ascending `key` order, keys unique) and the
    /// token of the next page ("" when this is the last).
    pub fn take<T>(
        &self,
        items: impl IntoIterator<Item = T>,
        key: impl Fn(&T) -> String,
    ) -> (Vec<T>, String) {
        let mut out = Vec::with_capacity(self.size.min(64));
        let mut more = false;
        for item in items {
            if !self.wants(&key(&item)) {
                continue;
            }
            if out.len() == self.size {
                more = true;
                break;
            }
            out.push(item);
        }
        let next = match out.last() {
            Some(last) if more => self.token(&key(last)),
            _ => String::new(),
        };
        (out, next)
    }

    /// The token of the page after the item with `key`.
    pub fn token(&self, key: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}\n{key}", self.filters))
    }
}

fn digest(filters: &str) -> String {
    hex::encode(&sha2::Sha256::digest(filters.as_bytes())[..8])
}

/// A key that sorts numbers in numeric order (zero-padded to 20 digits).
pub fn num_key(n: u64) -> String {
    format!("{n:020}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_page_by_page_sees_every_item_once_while_items_arrive() {
        let mut items: Vec<u64> = (1..=250).collect();
        let mut seen = Vec::new();
        let mut token = String::new();
        let mut arrived = 1000;
        loop {
            let page = Page::new(100, &token, "opd=dinkes").unwrap();
            let (got, next) = page.take(items.iter().copied(), |n| num_key(*n));
            seen.extend(got);
            // New items arrive between pages, an old one goes away.
            arrived += 1;
            items.push(arrived);
            items.retain(|n| *n != 3);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        let mut sorted = seen.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), seen.len(), "nothing twice");
        for n in 1..=250 {
            assert!(seen.contains(&n), "{n} missed");
        }
    }

    #[test]
    fn a_token_is_refused_for_another_query_or_when_forged() {
        let page = Page::new(2, "", "opd=a").unwrap();
        let (_, next) = page.take(1..=5u64, |n| num_key(*n));
        assert!(Page::new(2, &next, "opd=a").is_ok());
        let e = Page::new(2, &next, "opd=b").unwrap_err();
        assert!(e.to_string().starts_with("page_token:"), "{e}");
        assert!(Page::new(2, "%%%", "opd=a").is_err());
        assert_eq!(Page::new(0, "", "").unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(Page::new(1_000_000, "", "").unwrap().size, MAX_PAGE_SIZE);
    }
}
