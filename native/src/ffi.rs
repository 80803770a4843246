//! C entry points. Every one catches unwinds; errors come back as `{"error": "..."}` JSON or as a
//! non-zero status whose message `prover_last_error()` returns.

use std::ffi::{c_char, c_int, c_uint, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{anyhow, Result};

use crate::store::Store;
use crate::{panic_message, prover};

pub const ABI_VERSION: c_uint = 1;

/// Stores by params directory, so chunk/batch provers and verifiers over one directory share one.
static STORES: Mutex<Vec<(String, Arc<Store>)>> = Mutex::new(Vec::new());
static CHUNK_PROVER: RwLock<Option<Arc<Store>>> = RwLock::new(None);
static BATCH_PROVER: RwLock<Option<Arc<Store>>> = RwLock::new(None);
static CHUNK_VERIFIER: RwLock<Option<Arc<Store>>> = RwLock::new(None);
static BATCH_VERIFIER: RwLock<Option<Arc<Store>>> = RwLock::new(None);
static LAST_ERROR: Mutex<String> = Mutex::new(String::new());
/// Worker threads of the current process. rayon's global pool does not survive fork() (Celery
/// prefork children would hang), so each process builds its own on first use.
static POOL: Mutex<Option<(u32, Arc<rayon::ThreadPool>)>> = Mutex::new(None);

fn pool() -> Result<Arc<rayon::ThreadPool>> {
    let mut g = POOL
        .lock()
        .map_err(|_| anyhow!("thread pool registry poisoned"))?;
    let pid = std::process::id();
    if let Some((p, pool)) = g.as_ref() {
        if *p == pid {
            return Ok(pool.clone());
        }
    }
    let pool = Arc::new(rayon::ThreadPoolBuilder::new().build()?);
    *g = Some((pid, pool.clone()));
    Ok(pool)
}

/// Runs `f` on this process's pool, so every parallel iterator inside uses live threads.
fn in_pool<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    pool()?.install(f)
}

/// Opens (or reuses) the store of a params directory.
pub fn open_store(params_dir: &str) -> Result<Arc<Store>> {
    let mut stores = STORES
        .lock()
        .map_err(|_| anyhow!("store registry poisoned"))?;
    if let Some((_, s)) = stores.iter().find(|(d, _)| d == params_dir) {
        return Ok(s.clone());
    }
    let s = Arc::new(Store::open(Path::new(params_dir))?);
    stores.push((params_dir.to_string(), s.clone()));
    Ok(s)
}

unsafe fn arg<'a>(p: *const c_char, name: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(anyhow!("{name} is NULL"));
    }
    CStr::from_ptr(p)
        .to_str()
        .map_err(|_| anyhow!("{name} is not UTF-8"))
}

fn to_c(s: String) -> *mut c_char {
    CString::new(s)
        .unwrap_or_else(|_| CString::new(r#"{"error":"result contained NUL"}"#).unwrap_or_default())
        .into_raw()
}

fn error_json(msg: &str) -> String {
    serde_json::json!({ "error": msg }).to_string()
}

fn run_json(f: impl FnOnce() -> Result<String>) -> *mut c_char {
    let out = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => error_json(&format!("{e:#}")),
        Err(p) => error_json(&format!("prover panic: {}", panic_message(&*p))),
    };
    to_c(out)
}

fn set_last_error(msg: String) {
    if let Ok(mut g) = LAST_ERROR.lock() {
        *g = msg;
    }
}

fn run_init(slot: &RwLock<Option<Arc<Store>>>, params_dir: *const c_char) -> c_int {
    let r = catch_unwind(AssertUnwindSafe(|| -> Result<()> {
        let dir = unsafe { arg(params_dir, "params_dir") }?;
        let store = in_pool(|| open_store(dir))?;
        *slot.write().map_err(|_| anyhow!("prover slot poisoned"))? = Some(store);
        Ok(())
    }));
    match r {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            set_last_error(format!("{e:#}"));
            -1
        }
        Err(p) => {
            set_last_error(format!("prover panic: {}", panic_message(&*p)));
            -2
        }
    }
}

fn current(slot: &RwLock<Option<Arc<Store>>>, what: &str) -> Result<Arc<Store>> {
    slot.read()
        .map_err(|_| anyhow!("prover slot poisoned"))?
        .clone()
        .ok_or_else(|| anyhow!("{what} not initialised"))
}

fn run_verify(
    slot: &RwLock<Option<Arc<Store>>>,
    what: &str,
    proof: *const c_char,
    f: fn(&Store, &str) -> Result<()>,
) -> c_char {
    let r = catch_unwind(AssertUnwindSafe(|| -> Result<()> {
        let store = current(slot, what)?;
        let proof = unsafe { arg(proof, "proof_json") }?;
        in_pool(|| f(&store, proof))
    }));
    match r {
        Ok(Ok(())) => 1,
        Ok(Err(e)) => {
            set_last_error(format!("{e:#}"));
            0
        }
        Err(p) => {
            set_last_error(format!("verifier panic: {}", panic_message(&*p)));
            0
        }
    }
}

#[cfg(feature = "fault-injection")]
fn inject_fault() {
    extern "C" {
        fn raise(sig: c_int) -> c_int;
    }
    match std::env::var("ROLLER_PROVER_FAULT").as_deref() {
        Ok("abort") => std::process::abort(),
        // SAFETY: raise is async-signal-safe libc; SIGSEGV (11) kills the process as a crash would.
        Ok("segv") => unsafe {
            raise(11);
        },
        Ok("panic") => panic!("injected prover panic"),
        _ => {}
    }
}

/// # Safety
/// `params_dir` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn init_chunk_prover(params_dir: *const c_char) -> c_int {
    run_init(&CHUNK_PROVER, params_dir)
}

/// # Safety
/// `params_dir` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn init_batch_prover(params_dir: *const c_char) -> c_int {
    run_init(&BATCH_PROVER, params_dir)
}

/// # Safety
/// `params_dir` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn init_chunk_verifier(params_dir: *const c_char) -> c_int {
    run_init(&CHUNK_VERIFIER, params_dir)
}

/// # Safety
/// `params_dir` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn init_batch_verifier(params_dir: *const c_char) -> c_int {
    run_init(&BATCH_VERIFIER, params_dir)
}

/// # Safety
/// `traces_json` must be NULL or a NUL-terminated string; free the result with `free_c_chars`.
#[no_mangle]
pub unsafe extern "C" fn gen_chunk_proof(traces_json: *const c_char) -> *mut c_char {
    run_json(|| {
        #[cfg(feature = "fault-injection")]
        inject_fault();
        let store = current(&CHUNK_PROVER, "chunk prover")?;
        let traces = arg(traces_json, "traces_json")?;
        in_pool(|| prover::gen_chunk_proof(&store, traces))
    })
}

/// # Safety
/// `chunk_proofs_json` must be NULL or a NUL-terminated string; free the result with `free_c_chars`.
#[no_mangle]
pub unsafe extern "C" fn gen_batch_proof(chunk_proofs_json: *const c_char) -> *mut c_char {
    run_json(|| {
        let store = current(&BATCH_PROVER, "batch prover")?;
        let proofs = arg(chunk_proofs_json, "chunk_proofs_json")?;
        in_pool(|| prover::gen_batch_proof(&store, proofs))
    })
}

/// # Safety
/// `proof_json` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn verify_chunk_proof(proof_json: *const c_char) -> c_char {
    run_verify(
        &CHUNK_VERIFIER,
        "chunk verifier",
        proof_json,
        prover::verify_chunk_proof,
    )
}

/// # Safety
/// `proof_json` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn verify_batch_proof(proof_json: *const c_char) -> c_char {
    run_verify(
        &BATCH_VERIFIER,
        "batch verifier",
        proof_json,
        prover::verify_batch_proof,
    )
}

/// # Safety
/// `traces_json` must be NULL or a NUL-terminated string; free the result with `free_c_chars`.
#[no_mangle]
pub unsafe extern "C" fn block_traces_to_chunk_info(traces_json: *const c_char) -> *mut c_char {
    run_json(|| prover::chunk_info_json(arg(traces_json, "traces_json")?))
}

/// Message of the last failed init or verification (this process); free with `free_c_chars`.
#[no_mangle]
pub extern "C" fn prover_last_error() -> *mut c_char {
    let msg = LAST_ERROR.lock().map(|g| g.clone()).unwrap_or_default();
    to_c(msg)
}

/// # Safety
/// `p` must be NULL or a pointer returned by this library and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn free_c_chars(p: *mut c_char) {
    if !p.is_null() {
        drop(CString::from_raw(p));
    }
}

#[no_mangle]
pub extern "C" fn prover_abi_version() -> c_uint {
    ABI_VERSION
}
