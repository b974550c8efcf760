//! Listings followed to their last page, bounded: never a listing cut
//! short without a word.

use std::future::Future;

use rules::functions::Function;

use super::outcome::{HandlerError, port};
use crate::ports::{IotRegistry, Operation, Page, PortResult, Ports, PrincipalThing};

/// Upper bound on list pages followed in one call (a million-device
/// listing at 250 per page is 4000 pages).
pub(crate) const MAX_PAGES: usize = 100_000;

/// Counts the pages (or detach rounds) one listing has taken. Past
/// [`MAX_PAGES`] it is [`HandlerError::TooManyPages`], never a listing cut
/// short without a word.
#[derive(Debug)]
pub(crate) struct PageBudget {
    function: Function,
    operation: Operation,
    taken: usize,
}

impl PageBudget {
    pub(crate) fn new(function: Function, operation: Operation) -> Self {
        Self {
            function,
            operation,
            taken: 0,
        }
    }

    /// Call before fetching each page.
    pub(crate) fn take(&mut self) -> Result<(), HandlerError> {
        if self.taken == MAX_PAGES {
            return Err(HandlerError::TooManyPages {
                function: self.function.name(),
                operation: self.operation,
                pages: self.taken,
            });
        }
        self.taken += 1;
        Ok(())
    }
}

/// Every item of a paginated listing: `fetch` is called with each page's
/// token until a page has none ([`HandlerError::TooManyPages`] past
/// [`MAX_PAGES`]).
async fn all_pages<T, F, Fut>(
    function: Function,
    operation: Operation,
    mut fetch: F,
) -> Result<Vec<T>, HandlerError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = PortResult<Page<T>>>,
{
    let mut out = Vec::new();
    let mut token = None;
    let mut pages = PageBudget::new(function, operation);
    loop {
        pages.take()?;
        let page = fetch(token).await.map_err(port(function))?;
        out.extend(page.items);
        token = page.next_token;
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// Every policy attached to `arn`, all pages.
pub(crate) async fn all_policies<P: Ports>(
    ports: &P,
    function: Function,
    arn: &str,
) -> Result<Vec<String>, HandlerError> {
    all_pages(function, Operation::ListAttachedPolicies, |token| {
        ports.registry().list_attached_policies(arn, token)
    })
    .await
}

/// Every thing attached to `arn`, all pages.
pub(crate) async fn all_things<P: Ports>(
    ports: &P,
    function: Function,
    arn: &str,
) -> Result<Vec<String>, HandlerError> {
    all_pages(function, Operation::ListPrincipalThings, |token| {
        ports.registry().list_principal_things(arn, token)
    })
    .await
}

/// Every thing attached to `arn` and how (exclusively or not), all pages.
pub(crate) async fn all_principal_things<P: Ports>(
    ports: &P,
    function: Function,
    arn: &str,
) -> Result<Vec<PrincipalThing>, HandlerError> {
    all_pages(function, Operation::ListPrincipalThingsV2, |token| {
        ports.registry().list_principal_things_v2(arn, token)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(items: &[&str], next: Option<&str>) -> Page<String> {
        Page {
            items: items.iter().map(|s| (*s).to_owned()).collect(),
            next_token: next.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn all_pages_follows_every_token_to_the_end() {
        let items = all_pages(
            Function::Sweeper,
            Operation::ListPrincipalThings,
            |token| async move {
                Ok(match token.as_deref() {
                    None => page(&["a", "b"], Some("t1")),
                    Some("t1") => page(&[], Some("t2")),
                    Some("t2") => page(&["c"], None),
                    other => panic!("unexpected token {other:?}"),
                })
            },
        )
        .await
        .unwrap();
        assert_eq!(items, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn a_listing_that_never_ends_is_a_typed_error_not_a_short_list() {
        let mut calls = 0usize;
        let err = all_pages(Function::Sweeper, Operation::ListAttachedPolicies, |_| {
            calls += 1;
            async { Ok(page(&["p"], Some("again"))) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, MAX_PAGES);
        assert!(
            matches!(
                err,
                HandlerError::TooManyPages {
                    operation: Operation::ListAttachedPolicies,
                    pages: MAX_PAGES,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.is_retryable());
        assert_eq!(err.error_type(), "Fatal.TooManyPages");
        assert!(err.to_string().contains("ListAttachedPolicies"), "{err}");
    }
}
