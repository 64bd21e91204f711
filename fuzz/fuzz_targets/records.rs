//! A shard's records.json through merge and the tables built from it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use facelens_protocol::records::Records;
use facelens_protocol::shards::{merge_records, ShardDir};

fuzz_target!(|data: &[u8]| {
    let Ok(records) = serde_json::from_slice::<Records>(data) else { return };
    if records.check().is_err() {
        return;
    }
    let shard = ShardDir { path: "fuzz".into(), config_text: String::new(), records };
    if let Ok(merged) = merge_records(&[shard]) {
        let _ = facelens_protocol::report::build(&merged);
    }
});
