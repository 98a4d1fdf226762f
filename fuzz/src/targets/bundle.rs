//! Evidence bundles (`stele-bundle`), as `stele verify-bundle` reads a
//! file from anyone.

use stele_tlog::Signer;

/// Input: a bundle file. It verifies or is refused with a typed error;
/// never a panic, a hang or an allocation beyond the input's own size
/// (the reader grows a record's buffer only as its bytes arrive). A
/// bundle that verifies names as many events and purged entries as it
/// holds, between its first and last index. The key is the test vector's
/// (`docs/formats/bundle.md`), so its bytes (the seed) verify.
pub fn bundle_file(data: &[u8]) {
    let signer = Signer::new("bundle.test/log", [42; 32]).expect("a valid key name");
    let verifier = signer.verifier();
    match stele_bundle::verify(data, &verifier, None) {
        Ok(report) => {
            let count = report.events + report.purged;
            if count > 0 {
                let (first, last) = (
                    report.first_index.expect("a first index"),
                    report.last_index.expect("a last index"),
                );
                assert!(first <= last && last - first + 1 >= count);
                assert!(last < report.checkpoint.size);
            }
        }
        Err(e) => {
            assert!(!e.code().is_empty(), "{e}");
        }
    }
}
