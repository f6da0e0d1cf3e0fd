//! Keyset paging: every list answers at most `page_size` items in a stable
//! order and a `next_page_token` to go on from the last one.
//!
//! The token carries the last key given and a digest of the request's
//! filters: a token is refused for another query, and a page starts after
//! its key whatever was added or removed meanwhile, so a walk page by page
//! while data arrives sees nothing twice and misses nothing that existed
//! when it began (new items after the last key appear on a later page).
//!
//! A list reads its page from the store by key range, starting after the
//! token's key ([`Page::scan`]): a page reads at most one row past itself,
//! and at most [`MAX_SCAN`] rows however many its filters pass over, so no
//! answer is built whole in memory and one page costs bounded work.

use base64::Engine as _;
use sha2::Digest as _;

use super::ApiError;

/// Rows one page reads at most, kept or passed over by its filters. A
/// query whose filters pass over most rows gets a short (even empty) page
/// and a token to go on from the last row read.
pub const MAX_SCAN: usize = 5_000;
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

    /// The page read from `rows` (a store's rows after [`Page::after`], in
    /// ascending key order, keys unique): `keep` makes an item of a row or
    /// passes it over. Reads one row past a full page (to know there is a
    /// next one) and at most `max_scan` rows; the token goes on from the
    /// last row read, so rows passed over are not read again.
    pub fn scan<R, T, E>(
        &self,
        rows: impl IntoIterator<Item = Result<(String, R), E>>,
        max_scan: usize,
        mut keep: impl FnMut(R) -> Result<Option<T>, E>,
    ) -> Result<(Vec<T>, String), E> {
        let mut out = Vec::with_capacity(self.size.min(64));
        let mut last: Option<String> = None;
        let mut read = 0;
        for row in rows {
            let (key, r) = row?;
            if !self.wants(&key) {
                continue;
            }
            if let Some(l) = last.as_deref().filter(|_| read >= max_scan.max(1)) {
                return Ok((out, self.token(l)));
            }
            read += 1;
            if let Some(item) = keep(r)? {
                if let Some(l) = last.as_deref().filter(|_| out.len() == self.size) {
                    return Ok((out, self.token(l)));
                }
                out.push(item);
            }
            last = Some(key);
        }
        Ok((out, String::new()))
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

    /// `n` rows keyed by number, counting how many were read.
    fn rows(
        n: u64,
        read: &std::cell::Cell<usize>,
    ) -> impl Iterator<Item = Result<(String, u64), ApiError>> + '_ {
        (1..=n).map(move |i| {
            read.set(read.get() + 1);
            Ok((num_key(i), i))
        })
    }

    #[test]
    fn a_scanned_page_reads_one_row_past_itself_and_no_more() {
        let read = std::cell::Cell::new(0);
        let page = Page::new(2, "", "").unwrap();
        let (got, next) = page
            .scan(rows(10_000, &read), MAX_SCAN, |i| Ok(Some(i)))
            .unwrap();
        assert_eq!(got, [1, 2]);
        assert_eq!(read.get(), 3, "rows read for a page of two");
        // The next page starts after the token's key.
        let page = Page::new(2, &next, "").unwrap();
        let after =
            rows(10_000, &read).skip_while(|r| r.as_ref().is_ok_and(|(k, _)| !page.wants(k)));
        let (got, _) = page.scan(after, MAX_SCAN, |i| Ok(Some(i))).unwrap();
        assert_eq!(got, [3, 4]);
        // The last page has no token.
        let (got, next) = Page::new(5, "", "")
            .unwrap()
            .scan(rows(5, &read), MAX_SCAN, |i| Ok(Some(i)))
            .unwrap();
        assert_eq!((got.len(), next.as_str()), (5, ""));
    }

    #[test]
    fn a_scan_whose_filter_passes_over_most_rows_stops_at_the_cap_and_goes_on_later() {
        // Only multiples of 25 match: 4 a page, 40 rows read at most a page.
        let keep = |i: u64| Ok::<_, ApiError>(i.is_multiple_of(25).then_some(i));
        let (mut seen, mut token, mut pages) = (Vec::new(), String::new(), 0);
        loop {
            let read = std::cell::Cell::new(0);
            let page = Page::new(4, &token, "").unwrap();
            let after = rows(1_000, &read).filter(|r| r.as_ref().is_ok_and(|(k, _)| page.wants(k)));
            let (got, next) = page.scan(after, 40, keep).unwrap();
            assert!(got.len() <= 4);
            seen.extend(got);
            pages += 1;
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen, (1..=40).map(|i| i * 25).collect::<Vec<_>>());
        assert_eq!(pages, 25, "40 rows a page over 1,000 rows");
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
