//! One commit, all or nothing: `storage.transactionSync`, which workers-rs
//! 0.8.7 does not bind.
//!
//! Durable Object SQLite already groups the statements of one turn into one
//! write, but a statement that fails mid-commit (a full database, a row over
//! the size limit) leaves the ones before it to land with the turn: a saved
//! state without the events or duties it owes, say a new version with no
//! spawn of its run. Inside `transactionSync` a failure rolls back every
//! statement of the body. The actor's copies of its tables in memory are
//! its own to forget (see `ActorStorage::atomically`).

use wasm_bindgen::prelude::*;
use worker::State;

use super::storage_err;
use crate::error::ApiError;

#[wasm_bindgen]
extern "C" {
    /// `ctx.storage`, for the one method bound here.
    type SyncStorage;

    #[wasm_bindgen(method, catch, js_name = transactionSync)]
    fn transaction_sync(this: &SyncStorage, body: &mut dyn FnMut() -> Result<(), JsValue>) -> Result<JsValue, JsValue>;
}

/// Runs `body` (synchronous storage statements) as one transaction: its
/// error, or a failed commit, rolls all of them back.
pub fn atomically<T>(state: &State, body: impl FnOnce() -> Result<T, ApiError>) -> Result<T, ApiError> {
    let storage = state.as_raw().storage().map_err(|e| storage_err(format!("{e:?}")))?;
    let mut body = Some(body);
    let mut outcome: Option<Result<T, ApiError>> = None;
    let mut run = || -> Result<(), JsValue> {
        let Some(body) = body.take() else { return Ok(()) };
        let r = body();
        let failed = r.is_err();
        outcome = Some(r);
        // Thrown, so that the transaction rolls back.
        if failed { Err(JsValue::from_str("rolled back")) } else { Ok(()) }
    };
    let committed = storage.unchecked_ref::<SyncStorage>().transaction_sync(&mut run);
    match (outcome, committed) {
        (Some(Err(e)), _) => Err(e),
        (Some(Ok(v)), Ok(_)) => Ok(v),
        (Some(Ok(_)), Err(e)) | (None, Err(e)) => Err(storage_err(format!("transaction: {e:?}"))),
        (None, Ok(_)) => Err(ApiError::Internal("transaction: its body never ran".into())),
    }
}
