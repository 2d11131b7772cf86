//! Where raw frames travel on NATS: one subject per meter, named by its system title, and a
//! message id per frame so that JetStream drops a publisher's resends.
//!
//! - subject `smarty.raw.<system title in upper-case hex>` (`smarty.raw.5341471030700100`);
//!   through NATS's MQTT listener the topic `smarty/raw/<system title>` is the same subject;
//! - message id `<system title>:<frame counter>` (`5341471030700100:1234`);
//! - partition: a meter's frames all land in one of `n` partitions, so that one consumer at a
//!   time handles a meter and its frames stay in order (NATS 2.9 consumers filter on one
//!   subject each: a partition is the set of meters whose title hashes to it).

/// The prefix of every raw frame's subject.
pub const PREFIX: &str = "smarty.raw";

/// The subject of the raw frames of the meter with `system_title`.
///
/// # Example
/// ```
/// let title = *b"SAG\x10\x30\x70\x01\x00";
/// assert_eq!(smarty_fleet::subject::raw(&title), "smarty.raw.5341471030700100");
/// ```
pub fn raw(system_title: &[u8; 8]) -> String {
    format!("{PREFIX}.{}", smarty_p1::hex::upper(system_title))
}

/// The MQTT topic of the raw frames of the meter with `system_title`, for NATS's MQTT
/// listener: `smarty/raw/<system title>`, which NATS maps to the subject [`raw`].
///
/// # Example
/// ```
/// let title = *b"SAG\x10\x30\x70\x01\x00";
/// assert_eq!(smarty_fleet::subject::mqtt_topic(&title), "smarty/raw/5341471030700100");
/// ```
pub fn mqtt_topic(system_title: &[u8; 8]) -> String {
    raw(system_title).replace('.', "/")
}

/// The message id of a frame: `<system title>:<frame counter>`.
///
/// # Example
/// ```
/// let title = *b"SAG\x10\x30\x70\x01\x00";
/// assert_eq!(smarty_fleet::subject::message_id(&title, 1234), "5341471030700100:1234");
/// ```
pub fn message_id(system_title: &[u8; 8], frame_counter: u32) -> String {
    format!("{}:{frame_counter}", smarty_p1::hex::upper(system_title))
}

/// The system title a raw frame's subject names, if it is one (16 hex digits after
/// [`PREFIX`]).
///
/// # Example
/// ```
/// assert_eq!(
///     smarty_fleet::subject::system_title("smarty.raw.5341471030700100"),
///     Some(*b"SAG\x10\x30\x70\x01\x00")
/// );
/// assert_eq!(smarty_fleet::subject::system_title("smarty.raw.nonsense"), None);
/// ```
pub fn system_title(subject: &str) -> Option<[u8; 8]> {
    let hex = subject.strip_prefix(PREFIX)?.strip_prefix('.')?;
    if hex.len() != 16 {
        return None;
    }
    smarty_p1::hex::decode(hex).ok()?.try_into().ok()
}

/// The partition (`0..partitions`) NATS maps the meter with `system_title` to, with the
/// mapping of [`server_mapping`]: FNV-1a (32 bits) of the subject's last token — the title
/// in upper-case hex, as text — modulo `partitions`, as the server's `partition()` function
/// computes it. Stable across versions and machines.
///
/// # Example
/// ```
/// let title = *b"SAG\x10\x30\x70\x01\x00";
/// assert!(smarty_fleet::subject::partition(&title, 4) < 4);
/// assert_eq!(smarty_fleet::subject::partition(&title, 1), 0);
/// ```
pub fn partition(system_title: &[u8; 8], partitions: u32) -> u32 {
    partition_of_token(&smarty_p1::hex::upper(system_title).to_string(), partitions)
}

/// The partition of a subject's last token (what the server hashes).
pub fn partition_of_token(token: &str, partitions: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in token.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % partitions.max(1)
}

/// The subject a partitioned server gives the frames of partition `partition`:
/// `smarty.raw.<partition>.<title>`; the filter of that partition's consumer is
/// `smarty.raw.<partition>.*`.
pub fn partition_filter(partition: u32) -> String {
    format!("{PREFIX}.{partition}.*")
}

/// The filter of the meters' own subjects, as publishers send them (unmapped):
/// `smarty.raw.*`.
pub fn unmapped_filter() -> String {
    format!("{PREFIX}.*")
}

/// The lines of a `nats-server` configuration that map each meter's subject to its
/// partition (`partitions` > 1), for the global account (docs/fleet.md); with accounts,
/// put the `mappings` block in the fleet's account.
///
/// # Example
/// ```
/// assert_eq!(
///     smarty_fleet::subject::server_mapping(4),
///     "mappings {\n  \"smarty.raw.*\": \"smarty.raw.{{partition(4,1)}}.{{wildcard(1)}}\"\n}\n"
/// );
/// ```
pub fn server_mapping(partitions: u32) -> String {
    format!(
        "mappings {{\n  \"{PREFIX}.*\": \"{PREFIX}.{{{{partition({partitions},1)}}}}.{{{{wildcard(1)}}}}\"\n}}\n"
    )
}

/// The system title and partition a partitioned subject names
/// (`smarty.raw.<partition>.<title>`), or the title of an unmapped one
/// (`smarty.raw.<title>`, partition `None`).
///
/// # Example
/// ```
/// use smarty_fleet::subject::title_and_partition;
/// let title = *b"SAG\x10\x30\x70\x01\x00";
/// assert_eq!(title_and_partition("smarty.raw.3.5341471030700100"), Some((title, Some(3))));
/// assert_eq!(title_and_partition("smarty.raw.5341471030700100"), Some((title, None)));
/// assert_eq!(title_and_partition("smarty.raw.x.5341471030700100"), None);
/// ```
pub fn title_and_partition(subject: &str) -> Option<([u8; 8], Option<u32>)> {
    if let Some(title) = system_title(subject) {
        return Some((title, None));
    }
    let rest = subject.strip_prefix(PREFIX)?.strip_prefix('.')?;
    let (partition, hex) = rest.split_once('.')?;
    let partition: u32 = partition.parse().ok()?;
    let title = system_title(&format!("{PREFIX}.{hex}"))?;
    Some((title, Some(partition)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_meters_and_keep_each_in_one() {
        let mut counts = [0u32; 4];
        for i in 0u32..4000 {
            let mut title = *b"SAG\0\0\0\0\0";
            title[4..].copy_from_slice(&i.to_be_bytes());
            let p = partition(&title, 4);
            assert_eq!(p, partition(&title, 4));
            counts[p as usize] += 1;
        }
        assert!(
            counts.iter().all(|&n| (800..1200).contains(&n)),
            "{counts:?}"
        );
    }
}
