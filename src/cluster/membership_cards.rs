//! Writing and reading the members' certificate lists in etcd: a member's pages live at
//! `P/carrying/<member>/NNNN` and its [`Card`] at `P/members/<member>`, all on its
//! membership lease, so they disappear together when it stops.
//!
//! A member writes its pages first and its card last, then deletes pages left over from a
//! longer list; a reader reads a card and its pages at one revision, so it never mixes two
//! lists.

use std::collections::BTreeSet;

use etcd_client::{Client, DeleteOptions, GetOptions, PutOptions};

use crate::cluster::membership::MembershipSettings;
use crate::cluster::membership_roster::{Card, Carried, PAGE_BYTES, page_index, pages, read_pages};

/// `P/carrying/<member>/`, the prefix of a member's pages.
fn pages_prefix(settings: &MembershipSettings, member: &str) -> String {
    format!("{}carrying/{member}/", settings.prefix)
}

/// The first key after every key that starts with `prefix` (which ends in `/`).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// Publishes this replica's certificate `names` on `lease`: its pages, then its card,
/// then removes pages a longer list left behind.
pub(crate) async fn publish(
    client: &mut Client,
    settings: &MembershipSettings,
    lease: i64,
    names: &BTreeSet<String>,
) -> Result<(), etcd_client::Error> {
    let prefix = pages_prefix(settings, &settings.member);
    let stored = pages(names, PAGE_BYTES);
    let count = stored.len();
    for (index, page) in stored.into_iter().enumerate() {
        let options = PutOptions::new().with_lease(lease);
        client
            .put(format!("{prefix}{index:04}"), page, Some(options))
            .await?;
    }
    let card = Card { pages: count };
    let options = PutOptions::new().with_lease(lease);
    client
        .put(settings.member_key(), card.encode(), Some(options))
        .await?;
    let leftovers = DeleteOptions::new().with_range(prefix_end(&prefix));
    client
        .delete(format!("{prefix}{count:04}"), Some(leftovers))
        .await?;
    tracing::debug!(member = %settings.member, certificates = names.len(), pages = count, "published the certificates this replica carries");
    Ok(())
}

/// What `member` carries, read at `revision`: `None` when its card names pages that are
/// not there (read again next time). A member without a card (an older replica) or gone
/// by then carries every certificate.
pub(crate) async fn read_carried(
    client: &mut Client,
    settings: &MembershipSettings,
    member: &str,
    revision: i64,
) -> Result<Option<Carried>, etcd_client::Error> {
    let key = format!("{}{member}", settings.members_prefix());
    let options = GetOptions::new().with_revision(revision);
    let response = client.get(key, Some(options)).await?;
    let Some(card) = response
        .kvs()
        .first()
        .and_then(|kv| Card::decode(kv.value()))
    else {
        return Ok(Some(Carried::Every));
    };
    let prefix = pages_prefix(settings, member);
    let options = GetOptions::new().with_prefix().with_revision(revision);
    let response = client.get(prefix.as_str(), Some(options)).await?;
    let stored: Vec<(usize, Vec<u8>)> = response
        .kvs()
        .iter()
        .filter_map(|kv| Some((page_index(kv.key_str().ok()?)?, kv.value().to_vec())))
        .collect();
    match read_pages(card, &stored) {
        Some(names) => Ok(Some(Carried::Only(names))),
        None => {
            tracing::warn!(
                member,
                pages = card.pages,
                "a member's certificate list is incomplete; waiting for it on every certificate until it reads whole"
            );
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn pages_live_beside_the_members_and_their_range_ends_after_them() {
        let settings = MembershipSettings {
            prefix: "/certinel/".to_owned(),
            member: "web-1".to_owned(),
            lease_ttl: Duration::from_secs(15),
        };
        let prefix = pages_prefix(&settings, "web-1");
        assert_eq!(prefix, "/certinel/carrying/web-1/");
        assert_eq!(prefix_end(&prefix), b"/certinel/carrying/web-10".to_vec());
        assert!(prefix_end(&prefix).as_slice() > b"/certinel/carrying/web-1/9999".as_slice());
        // Another member's pages (`web-10`) stay outside the range.
        assert!(prefix_end(&prefix).as_slice() <= b"/certinel/carrying/web-10/0000".as_slice());
    }
}
