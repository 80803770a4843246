//! Circuit data cache under the params directory, one directory per fork: built once, written
//! atomically, reloaded.

use std::collections::HashMap;
use std::fs;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use plonky2::hash::hash_types::HashOut;
use plonky2::plonk::circuit_data::VerifierCircuitData;
use plonky2::plonk::proof::ProofWithPublicInputsTarget;
use plonky2::util::serialization::{
    Buffer, DefaultGateSerializer, DefaultGeneratorSerializer, Read, Write,
};

use crate::aggproof::{KIND_BATCH, KIND_BUNDLE, KIND_CHUNK};
use crate::circuits::{
    build_batch, build_bundle, build_chunk, hash_bytes, pad_and_build, vk_hash, wrap_builder,
    BatchTargets, BundleTargets, ChunkTargets, Common, Data, C, D, F, MAX_BUNDLE_BATCHES,
    NUM_BUCKETS,
};
use crate::fork::Fork;
use crate::sync::relock;
use crate::trace::keccak;

/// Bump when any circuit changes: old caches then live in a different folder and are ignored.
/// (Adding a circuit kind under new file names, as the bundle circuits did, needs no bump: the
/// existing files stay valid and the new ones are built on first use.) v3: forks (one directory
/// each, `<params_dir>/<fork>/roller_prover_v3/`), hashes per block in the chunk circuit.
pub const CACHE_VERSION: &str = "roller_prover_v3";

/// Fork keys of every store opened in this process, by proof kind: what names the fork of a proof
/// that another fork's verifier or aggregator refuses.
static KNOWN_KEYS: Mutex<Vec<(Fork, u16, [u8; 32])>> = Mutex::new(Vec::new());

/// The fork whose key of proof `kind` is `vk`, among the forks opened in this process.
pub fn fork_of_key(kind: u16, vk: &[u8]) -> Option<Fork> {
    relock(KNOWN_KEYS.lock())
        .iter()
        .find(|(_, k, key)| *k == kind && key[..] == *vk)
        .map(|(f, _, _)| *f)
}

pub type VerifierData = VerifierCircuitData<F, C, D>;

pub struct ChunkBucket {
    pub chunk: Data,
    pub chunk_targets: ChunkTargets,
    pub wrap: Data,
    pub wrap_proof: ProofWithPublicInputsTarget<D>,
}

/// A recursion circuit (batch or bundle) and the targets its prover fills in.
pub struct Circuit<T> {
    pub data: Data,
    pub targets: T,
}

pub type BatchCircuit = Circuit<BatchTargets>;
pub type BundleCircuit = Circuit<BundleTargets>;

type Registry<K, V> = Mutex<HashMap<K, Arc<V>>>;

/// Everything loaded for one fork under one params directory.
pub struct Store {
    pub fork: Fork,
    dir: PathBuf,
    /// Wrap verifier data per bucket (identical common data, different keys).
    pub wrap_vds: Vec<VerifierData>,
    /// Poseidon hashes of the wrap keys: the set the batch circuit accepts.
    pub allowed: Vec<HashOut<F>>,
    /// The fork's key per proof kind, what proofs carry as `vk` and `get_vk` returns: chunk =
    /// keccak(domain | every bucket's wrap circuit digest); batch = keccak(domain | cache version |
    /// chunk key), naming the fork's batch circuits (one per chunk count, each built
    /// deterministically from the wrap keys); bundle = keccak(domain | cache version | batch key).
    pub chunk_key: [u8; 32],
    pub batch_key: [u8; 32],
    pub bundle_key: [u8; 32],
    buckets: Registry<usize, ChunkBucket>,
    batches: Registry<usize, BatchCircuit>,
    batch_vds: Registry<usize, VerifierData>,
    /// Keyed by the chunk counts of the bundled batches, in chain order.
    bundles: Registry<Vec<usize>, BundleCircuit>,
    bundle_vds: Registry<Vec<usize>, VerifierData>,
}

fn io_err(what: &str) -> impl Fn(plonky2::util::serialization::IoError) -> anyhow::Error + '_ {
    move |e| anyhow!("{what}: serialization error {e:?}")
}

fn gen_ser() -> DefaultGeneratorSerializer<C, D> {
    DefaultGeneratorSerializer::<C, D>::default()
}

/// Writes via a temporary file and rename, so concurrent processes never read a partial file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// File layout: u64 LE length of the circuit bytes, circuit bytes, then the target description.
fn save_circuit(path: &Path, data: &Data, targets: Vec<u8>) -> Result<()> {
    let circuit = data
        .to_bytes(&DefaultGateSerializer, &gen_ser())
        .map_err(io_err("circuit"))?;
    let mut out = Vec::with_capacity(8 + circuit.len() + targets.len());
    out.extend_from_slice(&(circuit.len() as u64).to_le_bytes());
    out.extend_from_slice(&circuit);
    out.extend_from_slice(&targets);
    write_atomic(path, &out)
}

fn load_circuit(path: &Path) -> Result<(Data, Vec<u8>)> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < 8 {
        bail!("{}: truncated", path.display());
    }
    let n = u64::from_le_bytes(bytes[..8].try_into()?) as usize;
    let end = 8usize.checked_add(n).filter(|&e| e <= bytes.len());
    let end = end.ok_or_else(|| anyhow!("{}: truncated", path.display()))?;
    let data = Data::from_bytes(&bytes[8..end], &DefaultGateSerializer, &gen_ser())
        .map_err(io_err("circuit"))?;
    Ok((data, bytes[end..].to_vec()))
}

fn save_vd(path: &Path, data: &Data) -> Result<()> {
    let vd = data.verifier_data();
    write_atomic(
        path,
        &vd.to_bytes(&DefaultGateSerializer)
            .map_err(io_err("verifier data"))?,
    )
}

fn load_vd(path: &Path) -> Result<VerifierData> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    VerifierData::from_bytes(bytes, &DefaultGateSerializer).map_err(io_err("verifier data"))
}

fn chunk_targets_bytes(t: &ChunkTargets) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    buf.write_target(t.len).map_err(io_err("targets"))?;
    buf.write_target_vec(&t.hashes).map_err(io_err("targets"))?;
    buf.write_target_vec(&t.bytes).map_err(io_err("targets"))?;
    buf.write_target_vec(&t.data_hash)
        .map_err(io_err("targets"))?;
    buf.write_target_vec(&t.pi_hash)
        .map_err(io_err("targets"))?;
    buf.write_target(t.block_count).map_err(io_err("targets"))?;
    buf.write_target_bool_vec(&t.in_len)
        .map_err(io_err("targets"))?;
    buf.write_target_bool_vec(&t.in_blocks)
        .map_err(io_err("targets"))?;
    Ok(buf)
}

fn chunk_targets_from(bytes: &[u8]) -> Result<ChunkTargets> {
    let mut b = Buffer::new(bytes);
    Ok(ChunkTargets {
        len: b.read_target().map_err(io_err("targets"))?,
        hashes: b.read_target_vec().map_err(io_err("targets"))?,
        bytes: b.read_target_vec().map_err(io_err("targets"))?,
        data_hash: b.read_target_vec().map_err(io_err("targets"))?,
        pi_hash: b.read_target_vec().map_err(io_err("targets"))?,
        block_count: b.read_target().map_err(io_err("targets"))?,
        in_len: b.read_target_bool_vec().map_err(io_err("targets"))?,
        in_blocks: b.read_target_bool_vec().map_err(io_err("targets"))?,
    })
}

/// Targets stored after their circuit in its cache file.
trait StoredTargets: Sized {
    fn to_bytes(&self) -> Result<Vec<u8>>;
    fn from_bytes(bytes: &[u8]) -> Result<Self>;
}

impl StoredTargets for BatchTargets {
    fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        buf.write_usize(self.proofs.len())
            .map_err(io_err("targets"))?;
        for i in 0..self.proofs.len() {
            buf.write_target_proof_with_public_inputs(&self.proofs[i])
                .map_err(io_err("targets"))?;
            buf.write_target_verifier_circuit(&self.vks[i])
                .map_err(io_err("targets"))?;
            buf.write_target_bool_vec(&self.selectors[i])
                .map_err(io_err("targets"))?;
        }
        Ok(buf)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut b = Buffer::new(bytes);
        let n = b.read_usize().map_err(io_err("targets"))?;
        let mut t = BatchTargets {
            proofs: vec![],
            vks: vec![],
            selectors: vec![],
        };
        for _ in 0..n {
            t.proofs.push(
                b.read_target_proof_with_public_inputs()
                    .map_err(io_err("targets"))?,
            );
            t.vks.push(
                b.read_target_verifier_circuit()
                    .map_err(io_err("targets"))?,
            );
            t.selectors
                .push(b.read_target_bool_vec().map_err(io_err("targets"))?);
        }
        Ok(t)
    }
}

impl StoredTargets for BundleTargets {
    fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        buf.write_usize(self.proofs.len())
            .map_err(io_err("targets"))?;
        for p in &self.proofs {
            buf.write_target_proof_with_public_inputs(p)
                .map_err(io_err("targets"))?;
        }
        Ok(buf)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut b = Buffer::new(bytes);
        let k = b.read_usize().map_err(io_err("targets"))?;
        let proofs = (0..k)
            .map(|_| {
                b.read_target_proof_with_public_inputs()
                    .map_err(io_err("targets"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(BundleTargets { proofs })
    }
}

/// Refuses a bundle shape no circuit is built for: no batches, too many, or an empty batch.
pub fn check_bundle_shape(sizes: &[usize]) -> Result<()> {
    if sizes.is_empty() {
        bail!("empty bundle: no batch proofs");
    }
    if sizes.len() > MAX_BUNDLE_BATCHES {
        bail!(
            "bundle of {} batches exceeds the maximum of {MAX_BUNDLE_BATCHES} per bundle proof; \
             split the bundle",
            sizes.len()
        );
    }
    if let Some(i) = sizes.iter().position(|&n| n == 0 || n > u16::MAX as usize) {
        bail!("batch {i} of the bundle has {} chunks", sizes[i]);
    }
    Ok(())
}

fn log2_ceil(n: usize) -> usize {
    n.next_power_of_two().trailing_zeros() as usize
}

impl Store {
    fn chunk_path(&self, j: usize) -> PathBuf {
        self.dir.join(format!("chunk_{j}.bin"))
    }
    fn wrap_path(&self, j: usize) -> PathBuf {
        self.dir.join(format!("wrap_{j}.bin"))
    }
    fn wrap_vd_path(dir: &Path, j: usize) -> PathBuf {
        dir.join(format!("wrap_{j}.vd"))
    }
    /// File stem of the batch circuit for `n` chunks: `batch_<n>`.
    fn batch_stem(n: usize) -> String {
        format!("batch_{n}")
    }
    /// File stem of the bundle circuit for batches of `sizes` chunks: `bundle_<n1>-<n2>-...`.
    fn bundle_stem(sizes: &[usize]) -> String {
        let key: Vec<String> = sizes.iter().map(usize::to_string).collect();
        format!("bundle_{}", key.join("-"))
    }
    /// `<stem>.bin`: prover data and targets.
    fn circuit_path(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.bin"))
    }
    /// `<stem>.vd`: verifier data.
    fn vd_path(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.vd"))
    }

    /// Opens (building on first use) `fork`'s chunk and wrap circuits of every bucket under
    /// `<params_dir>/<fork>/<CACHE_VERSION>/`.
    pub fn open(params_dir: &Path, fork: Fork) -> Result<Store> {
        let dir = params_dir.join(fork.name()).join(CACHE_VERSION);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        if !(0..NUM_BUCKETS).all(|j| Self::wrap_vd_path(&dir, j).exists()) {
            build_chunk_set(&dir, fork)?;
        }
        let wrap_vds = (0..NUM_BUCKETS)
            .map(|j| load_vd(&Self::wrap_vd_path(&dir, j)))
            .collect::<Result<Vec<_>>>()?;
        if wrap_vds.iter().any(|v| v.common != wrap_vds[0].common) {
            bail!(
                "cached wrap circuits disagree on their common data; delete {}",
                dir.display()
            );
        }
        let allowed = wrap_vds.iter().map(|v| vk_hash(&v.verifier_only)).collect();
        let mut pre = b"roller_prover chunk key".to_vec();
        for v in &wrap_vds {
            pre.extend_from_slice(&hash_bytes(&v.verifier_only.circuit_digest));
        }
        let chunk_key = keccak(&pre);
        let derived = |domain: &str, of: &[u8; 32]| {
            keccak(&[domain.as_bytes(), CACHE_VERSION.as_bytes(), of].concat())
        };
        let batch_key = derived("roller_prover batch key", &chunk_key);
        let bundle_key = derived("roller_prover bundle key", &batch_key);
        {
            let mut known = relock(KNOWN_KEYS.lock());
            for (kind, key) in [
                (KIND_CHUNK, chunk_key),
                (KIND_BATCH, batch_key),
                (KIND_BUNDLE, bundle_key),
            ] {
                if !known.contains(&(fork, kind, key)) {
                    known.push((fork, kind, key));
                }
            }
        }
        Ok(Store {
            fork,
            dir,
            wrap_vds,
            allowed,
            chunk_key,
            batch_key,
            bundle_key,
            buckets: Mutex::new(HashMap::new()),
            batches: Mutex::new(HashMap::new()),
            batch_vds: Mutex::new(HashMap::new()),
            bundles: Mutex::new(HashMap::new()),
            bundle_vds: Mutex::new(HashMap::new()),
        })
    }

    pub fn wrap_common(&self) -> &Common {
        &self.wrap_vds[0].common
    }

    /// The fork's key of proof kind `kind` (`KIND_CHUNK`, `KIND_BATCH`, `KIND_BUNDLE`).
    pub fn key(&self, kind: u16) -> Result<[u8; 32]> {
        match kind {
            KIND_CHUNK => Ok(self.chunk_key),
            KIND_BATCH => Ok(self.batch_key),
            KIND_BUNDLE => Ok(self.bundle_key),
            other => bail!("unknown proof type {other} (0 chunk, 1 batch, 2 bundle)"),
        }
    }

    /// Chunk and wrap prover data of one bucket, loaded on first use.
    pub fn bucket(&self, j: usize) -> Result<Arc<ChunkBucket>> {
        let mut map = relock(self.buckets.lock());
        if let Some(b) = map.get(&j) {
            return Ok(b.clone());
        }
        let (chunk, ct) = load_circuit(&self.chunk_path(j))?;
        let (wrap, wt) = load_circuit(&self.wrap_path(j))?;
        let wrap_proof = Buffer::new(&wt)
            .read_target_proof_with_public_inputs()
            .map_err(io_err("targets"))?;
        let b = Arc::new(ChunkBucket {
            chunk,
            chunk_targets: chunk_targets_from(&ct)?,
            wrap,
            wrap_proof,
        });
        map.insert(j, b.clone());
        Ok(b)
    }

    /// The circuit `key` of registry `map`: loaded from `<stem>.bin`, else built by `build` and
    /// written with its `<stem>.vd`. The registry stays locked meanwhile, so a process builds each
    /// circuit once.
    fn circuit<K: Hash + Eq, T: StoredTargets>(
        &self,
        map: &Registry<K, Circuit<T>>,
        key: K,
        stem: &str,
        build: impl FnOnce() -> Result<(Data, T)>,
    ) -> Result<Arc<Circuit<T>>> {
        let mut map = relock(map.lock());
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let path = self.circuit_path(stem);
        let circuit = if path.exists() {
            let (data, t) = load_circuit(&path)?;
            Circuit {
                data,
                targets: T::from_bytes(&t)?,
            }
        } else {
            let (data, targets) = build()?;
            save_circuit(&path, &data, targets.to_bytes()?)?;
            save_vd(&self.vd_path(stem), &data)?;
            Circuit { data, targets }
        };
        let c = Arc::new(circuit);
        map.insert(key, c.clone());
        Ok(c)
    }

    /// The verifier data `key` of registry `map`: loaded from `<stem>.vd`, else taken from the
    /// circuit (`circuit` loads or builds it). Not locked while the circuit is built: that takes
    /// the circuit registry's lock.
    fn verifier_data<K: Hash + Eq, T>(
        &self,
        map: &Registry<K, VerifierData>,
        key: K,
        stem: &str,
        circuit: impl FnOnce() -> Result<Arc<Circuit<T>>>,
    ) -> Result<Arc<VerifierData>> {
        if let Some(v) = relock(map.lock()).get(&key) {
            return Ok(v.clone());
        }
        let path = self.vd_path(stem);
        let vd = if path.exists() {
            load_vd(&path)?
        } else {
            circuit()?.data.verifier_data()
        };
        let vd = Arc::new(vd);
        relock(map.lock()).insert(key, vd.clone());
        Ok(vd)
    }

    /// Batch circuit for `n` chunks, built and cached on first use.
    pub fn batch(&self, n: usize) -> Result<Arc<BatchCircuit>> {
        self.circuit(&self.batches, n, &Self::batch_stem(n), || {
            Ok(build_batch(n, self.wrap_common(), &self.allowed))
        })
    }

    /// Batch verifier data for `n` chunks (builds the batch circuit if it was never built here).
    pub fn batch_vd(&self, n: usize) -> Result<Arc<VerifierData>> {
        self.verifier_data(&self.batch_vds, n, &Self::batch_stem(n), || self.batch(n))
    }

    /// Bundle circuit over batches of `sizes` chunks (in chain order), built and cached on first
    /// use from the batch circuits' verifier data (which builds those batch circuits if needed).
    pub fn bundle(&self, sizes: &[usize]) -> Result<Arc<BundleCircuit>> {
        check_bundle_shape(sizes)?;
        self.circuit(
            &self.bundles,
            sizes.to_vec(),
            &Self::bundle_stem(sizes),
            || {
                let vds = sizes
                    .iter()
                    .map(|&n| self.batch_vd(n))
                    .collect::<Result<Vec<_>>>()?;
                let batches: Vec<_> = vds.iter().map(|v| (&v.common, &v.verifier_only)).collect();
                Ok(build_bundle(&batches))
            },
        )
    }

    /// Bundle verifier data for batches of `sizes` chunks (builds the circuit if never built here).
    pub fn bundle_vd(&self, sizes: &[usize]) -> Result<Arc<VerifierData>> {
        check_bundle_shape(sizes)?;
        let stem = Self::bundle_stem(sizes);
        self.verifier_data(&self.bundle_vds, sizes.to_vec(), &stem, || {
            self.bundle(sizes)
        })
    }
}

/// Builds every bucket's chunk circuit of `fork` and its wrap, all wraps padded to one degree.
fn build_chunk_set(dir: &Path, fork: Fork) -> Result<()> {
    let mut wraps = Vec::with_capacity(NUM_BUCKETS);
    for j in 0..NUM_BUCKETS {
        let (chunk, targets) = build_chunk(j, fork);
        save_circuit(
            &dir.join(format!("chunk_{j}.bin")),
            &chunk,
            chunk_targets_bytes(&targets)?,
        )?;
        wraps.push(wrap_builder(&chunk.common, &chunk.verifier_only));
    }
    let max_gates = wraps
        .iter()
        .map(|w| w.builder.num_gates())
        .max()
        .unwrap_or(1);
    // Leave room for the gates build() adds (public-input hash, constants).
    let degree_bits = log2_ceil(max_gates + 512);
    let mut common: Option<Common> = None;
    for (j, w) in wraps.into_iter().enumerate() {
        let data = pad_and_build(w.builder, degree_bits);
        if common.as_ref().is_some_and(|c| *c != data.common) {
            bail!("wrap circuit of bucket {j} has a different shape from bucket 0");
        }
        let mut t = Vec::new();
        t.write_target_proof_with_public_inputs(&w.proof)
            .map_err(io_err("targets"))?;
        save_circuit(&dir.join(format!("wrap_{j}.bin")), &data, t)?;
        save_vd(&Store::wrap_vd_path(dir, j), &data)?;
        common = Some(data.common);
    }
    Ok(())
}
