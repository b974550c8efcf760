//! `contracts::validate` on every contract (picked by the first byte).
//! A payload that validates must serialize back to JSON that validates to
//! the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rules::contracts::{Contract, validate};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let contract = Contract::ALL[usize::from(pick) % Contract::ALL.len()];
    if let Ok(message) = validate(contract, payload) {
        assert_eq!(message.contract(), contract);
        let json = message.to_json();
        let text = serde_json::to_vec(&json).expect("a message serializes");
        match validate(contract, &text) {
            Ok(again) => assert_eq!(again, message, "round trip changed {contract}"),
            // Serializing may grow a payload right at the size limit
            // (e.g. `\/` is read as `/` but other escapes are longer).
            Err(rules::contracts::ContractError::TooLarge { .. }) => {}
            Err(e) => panic!("{contract}: re-serialized message is refused: {e}"),
        }
    }
});
