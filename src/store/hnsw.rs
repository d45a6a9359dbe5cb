//! Our own HNSW graph (Malkov & Yashunin, 2016), built as hnswlib builds it, over f16 copies of
//! the embeddings.
//!
//! Why not hnsw_rs any more (measured at 1M CLIP-like vectors): its search descends each upper
//! layer by a single hop, it drops the farthest link when a neighbour list overflows instead of
//! re-running the diversity heuristic, it keeps ~4.5 KB per point (an `Arc` per link) and took
//! 28 s to reload. Here every upper layer is descended greedily until nothing improves, an
//! overflowing list is re-chosen with the heuristic, a point costs its f16 vector (1 KB at 512
//! dimensions) plus 132 bytes of layer-0 links, and the whole graph is a few flat arrays that load
//! with sequential reads.
//!
//! Scores from the graph are f16-accurate (±1e-3); callers re-score the few hits they return
//! with the exact f32 embeddings.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

/// Links per point on the upper layers (hnswlib's `M`); layer 0 keeps twice as many.
pub const M: usize = 16;
const M0: usize = 2 * M;
/// Candidates considered when linking a new point (hnswlib's `ef_construction`). 160, not the
/// customary 200: at 1M CLIP-like pictures the build is 9-17% faster for searches a little wider at
/// the same recall, which the default search breadths (`vectors.rs`) pay (benches/README.md,
/// "ef_construction 160").
pub const EF_CONSTRUCTION: usize = 160;
/// Points inserted together: each batch searches the graph as it was before the batch, in
/// parallel, and also sees its own members exactly (a small all-pairs pass), so batching
/// costs no link a one-by-one insert would have made.
const INSERT_BATCH: usize = 512;
/// How many neighbours' vectors a search asks memory for ahead of scoring them.
const PREFETCH_AHEAD: usize = 2;

/// Cosine distance between unit vectors (1 - dot): smaller is closer.
#[derive(Clone, Copy, PartialEq)]
struct Scored {
    distance: f32,
    slot: u32,
}

impl Eq for Scored {}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance.total_cmp(&other.distance).then(self.slot.cmp(&other.slot))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The f16 vectors of the graph, `dim` per slot, end to end. Those loaded from a saved file stay
/// memory-mapped (opening a million pictures reads none of their 1 GB until searches touch
/// them, and the page cache holds them once for every process); those inserted since are in
/// memory after them.
#[derive(Default)]
pub(super) struct Rows {
    mapped: Option<memmap2::Mmap>,
    inserted: Vec<f16>,
}

impl Rows {
    /// The first `values` f16s of `file` (which the caller has checked holds them), mapped.
    pub(super) fn map(file: &std::fs::File, values: usize) -> std::io::Result<Self> {
        if values == 0 {
            return Ok(Self::default());
        }
        // SAFETY: the file is private to the data folder, which one process holds at a time (the
        // text index's lock), and that process only ever appends to it past the mapped length.
        let map = unsafe { memmap2::MmapOptions::new().len(values * 2).map(file)? };
        Ok(Self { mapped: Some(map), inserted: Vec::new() })
    }

    fn mapped(&self) -> &[f16] {
        self.mapped.as_deref().map_or(&[], bytemuck::cast_slice)
    }

    fn get(&self, start: usize, len: usize) -> &[f16] {
        let mapped = self.mapped();
        if start < mapped.len() {
            &mapped[start..start + len]
        } else {
            let start = start - mapped.len();
            &self.inserted[start..start + len]
        }
    }

    pub(super) fn len(&self) -> usize {
        self.mapped().len() + self.inserted.len()
    }

    /// The values from `start` on, in at most two pieces (mapped, then inserted).
    pub(super) fn starting_at(&self, start: usize) -> [&[f16]; 2] {
        let mapped = self.mapped();
        if start < mapped.len() {
            [&mapped[start..], &self.inserted]
        } else {
            [&[], &self.inserted[start - mapped.len()..]]
        }
    }
}

/// The graph: slot-indexed flat arrays. Slots are never reused; removal is the caller's
/// business (tombstones filtered at search time, a rebuild when they pile up).
pub struct Graph {
    pub(super) dim: usize,
    pub(super) vectors: Rows,
    /// Top layer of each slot.
    pub(super) levels: Vec<u8>,
    /// Layer 0: per slot a count then `M0` neighbour slots.
    pub(super) layer0: Vec<u32>,
    /// Layers 1..=level of the slots that reach above layer 0: per layer a count then `M` slots.
    pub(super) upper: HashMap<u32, Vec<u32>>,
    pub(super) entry: Option<u32>,
}

impl Graph {
    /// u32s per slot in `layer0`: the count, then the links.
    pub const LAYER0_STRIDE: usize = M0 + 1;

    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            vectors: Rows::default(),
            levels: Vec::new(),
            layer0: Vec::new(),
            upper: HashMap::new(),
            entry: None,
        }
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    fn vector(&self, slot: u32) -> &[f16] {
        self.vectors.get(slot as usize * self.dim, self.dim)
    }

    fn links(&self, slot: u32, layer: usize) -> &[u32] {
        let list = if layer == 0 {
            &self.layer0[slot as usize * (M0 + 1)..(slot as usize + 1) * (M0 + 1)]
        } else {
            let upper = &self.upper[&slot];
            &upper[(layer - 1) * (M + 1)..layer * (M + 1)]
        };
        &list[1..1 + list[0] as usize]
    }

    fn set_links(&mut self, slot: u32, layer: usize, links: &[u32]) {
        let list = if layer == 0 {
            &mut self.layer0[slot as usize * (M0 + 1)..(slot as usize + 1) * (M0 + 1)]
        } else {
            let upper = self.upper.get_mut(&slot).expect("a slot above layer 0 has upper lists");
            &mut upper[(layer - 1) * (M + 1)..layer * (M + 1)]
        };
        list[0] = links.len() as u32;
        list[1..1 + links.len()].copy_from_slice(links);
    }

    /// Every link points at a slot of the graph, and every slot above layer 0 has its lists
    /// (checked after loading a file: a damaged one must not index out of bounds later).
    pub fn links_are_sound(&self) -> bool {
        let n = self.len() as u32;
        let in_range =
            |list: &[u32], max: usize| list[0] as usize <= max && list[1..=list[0] as usize].iter().all(|s| *s < n);
        let layer0_ok = self.layer0.chunks_exact(M0 + 1).all(|list| in_range(list, M0));
        let upper_ok = self.levels.iter().enumerate().all(|(slot, level)| {
            *level == 0
                || self.upper.get(&(slot as u32)).is_some_and(|lists| {
                    lists.len() == *level as usize * (M + 1) && lists.chunks_exact(M + 1).all(|list| in_range(list, M))
                })
        });
        layer0_ok && upper_ok && self.vectors.len() == self.len() * self.dim
    }

    fn max_level(&self) -> usize {
        self.entry.map_or(0, |e| self.levels[e as usize] as usize)
    }

    fn distance(&self, query: &[f32], slot: u32) -> f32 {
        1.0 - dot(query, self.vector(slot))
    }

    /// The `k` nearest of `slots` to `query`, every one scored (no graph walk): (slot, cosine),
    /// best first.
    pub fn nearest_among(&self, query: &[f32], slots: impl Iterator<Item = u32>, k: usize) -> Vec<(u32, f32)> {
        // The best k so far, the farthest on top.
        let mut best: BinaryHeap<Scored> = BinaryHeap::with_capacity(k + 1);
        for slot in slots {
            let scored = Scored { distance: self.distance(query, slot), slot };
            if best.len() < k {
                best.push(scored);
            } else if best.peek().is_some_and(|farthest| scored < *farthest) {
                best.pop();
                best.push(scored);
            }
        }
        best.into_sorted_vec().into_iter().map(|s| (s.slot, 1.0 - s.distance)).collect()
    }

    /// Inserts vectors (unit length, `dim` each) and returns their slots, in order.
    pub fn insert(&mut self, vectors: &[&[f32]]) -> std::ops::Range<u32> {
        let first = self.len() as u32;
        for chunk in vectors.chunks(INSERT_BATCH) {
            self.insert_batch(chunk);
        }
        first..self.len() as u32
    }

    fn insert_batch(&mut self, batch: &[&[f32]]) {
        let first = self.len() as u32;
        let slots: Vec<u32> = (first..first + batch.len() as u32).collect();
        for (&slot, vector) in slots.iter().zip(batch) {
            let level = random_level(slot);
            self.vectors.inserted.extend(vector.iter().map(|v| f16::from_f32(*v)));
            self.levels.push(level);
            self.layer0.extend(std::iter::repeat_n(0, M0 + 1));
            if level > 0 {
                self.upper.insert(slot, vec![0; level as usize * (M + 1)]);
            }
        }
        // Each new point's neighbours per layer, from the graph before the batch plus the batch.
        let graph = &*self;
        let chosen: Vec<Vec<Vec<u32>>> = slots
            .par_iter()
            .zip(batch.par_iter())
            .map(|(&slot, query)| {
                let level = graph.levels[slot as usize] as usize;
                let mut per_layer = Vec::with_capacity(level + 1);
                let mut found: Vec<Vec<Scored>> = vec![Vec::new(); level + 1];
                if let Some(entry) = graph.entry {
                    let mut nearest = Scored { distance: graph.distance(query, entry), slot: entry };
                    for layer in (level + 1..=graph.max_level()).rev() {
                        nearest = graph.greedy(query, nearest, layer);
                    }
                    let mut entries = vec![nearest];
                    for layer in (0..=level.min(graph.max_level())).rev() {
                        let candidates = graph.search_layer(query, &entries, EF_CONSTRUCTION, layer, &|_| true);
                        entries = candidates.clone();
                        found[layer] = candidates;
                    }
                }
                for (layer, candidates) in found.iter_mut().enumerate() {
                    // The batch's earlier members that reach this layer, scored exactly.
                    for &other in slots.iter().take_while(|s| **s < slot) {
                        if graph.levels[other as usize] as usize >= layer {
                            candidates.push(Scored { distance: graph.distance(query, other), slot: other });
                        }
                    }
                    candidates.sort_unstable();
                    // hnswlib gives a new point M links on every layer; layer 0 lists grow to M0 as
                    // later points link back.
                    per_layer.push(graph.select_neighbours(candidates, M));
                }
                per_layer
            })
            .collect();
        for (&slot, per_layer) in slots.iter().zip(&chosen) {
            for (layer, links) in per_layer.iter().enumerate() {
                self.set_links(slot, layer, links);
            }
        }
        // Reverse links, grouped by the point that gains them: each group is independent.
        let mut gains: HashMap<(u32, usize), Vec<u32>> = HashMap::new();
        for (&slot, per_layer) in slots.iter().zip(&chosen) {
            for (layer, links) in per_layer.iter().enumerate() {
                for &neighbour in links {
                    gains.entry((neighbour, layer)).or_default().push(slot);
                }
            }
        }
        let graph = &*self;
        let updated: Vec<((u32, usize), Vec<u32>)> = gains
            .into_par_iter()
            .map(|((target, layer), new)| {
                let mut links: Vec<u32> = graph.links(target, layer).to_vec();
                links.extend(new.into_iter().filter(|s| !graph.links(target, layer).contains(s)));
                let max = if layer == 0 { M0 } else { M };
                if links.len() > max {
                    let centre = graph.vector(target);
                    let mut candidates = Vec::with_capacity(links.len());
                    graph.for_each_prefetched(&links, |s| {
                        candidates.push(Scored { distance: 1.0 - dot_halves(centre, graph.vector(s)), slot: s });
                    });
                    candidates.sort_unstable();
                    links = graph.select_neighbours(&candidates, max);
                }
                ((target, layer), links)
            })
            .collect();
        for ((target, layer), links) in updated {
            self.set_links(target, layer, &links);
        }
        if let Some(&top) = slots.iter().max_by_key(|s| (self.levels[**s as usize], std::cmp::Reverse(**s))) {
            if self.entry.is_none() || self.levels[top as usize] as usize > self.max_level() {
                self.entry = Some(top);
            }
        }
    }

    /// hnswlib's neighbour heuristic: walk the candidates nearest first and keep one only if it
    /// is closer to the centre than to every one kept so far, so links spread in all directions
    /// instead of bunching in the nearest cluster (what lets a search leave a cluster at all).
    fn select_neighbours(&self, sorted: &[Scored], max: usize) -> Vec<u32> {
        let mut kept: Vec<u32> = Vec::with_capacity(max);
        for candidate in sorted {
            if kept.len() == max {
                break;
            }
            let vector = self.vector(candidate.slot);
            if !kept.contains(&candidate.slot)
                && kept.iter().all(|s| 1.0 - dot_halves(vector, self.vector(*s)) >= candidate.distance)
            {
                kept.push(candidate.slot);
            }
        }
        kept
    }

    /// Calls `each` with every slot in order, each slot's vector asked from memory a couple of
    /// slots before its turn: in a library larger than the cache, walking the graph is bound by
    /// these loads, not by the arithmetic. A couple, not all at once: more misses than the core
    /// can track stall the prefetch instructions themselves (4,000 searches of 1M pictures on one
    /// Zen 3 core: two ahead took ~10% less time than all at once; one ahead about the same).
    fn for_each_prefetched(&self, slots: &[u32], mut each: impl FnMut(u32)) {
        for &slot in slots.iter().take(PREFETCH_AHEAD) {
            prefetch(self.vector(slot));
        }
        for (i, &slot) in slots.iter().enumerate() {
            if let Some(&ahead) = slots.get(i + PREFETCH_AHEAD) {
                prefetch(self.vector(ahead));
            }
            each(slot);
        }
    }

    /// On an upper layer: move to the nearest neighbour while that gets closer.
    fn greedy(&self, query: &[f32], mut nearest: Scored, layer: usize) -> Scored {
        loop {
            let mut moved = false;
            for &n in self.links(nearest.slot, layer) {
                let distance = self.distance(query, n);
                if distance < nearest.distance {
                    nearest = Scored { distance, slot: n };
                    moved = true;
                }
            }
            if !moved {
                return nearest;
            }
        }
    }

    /// Best-first search of one layer from `entries`, keeping the `ef` nearest points that
    /// `allow` accepts (others are still walked through). Nearest first.
    fn search_layer(
        &self,
        query: &[f32],
        entries: &[Scored],
        ef: usize,
        layer: usize,
        allow: &dyn Fn(u32) -> bool,
    ) -> Vec<Scored> {
        VISITED.with(|visited| {
            let mut visited = visited.borrow_mut();
            visited.start(self.len());
            let mut candidates: BinaryHeap<std::cmp::Reverse<Scored>> = BinaryHeap::new();
            let mut results: BinaryHeap<Scored> = BinaryHeap::new();
            for &entry in entries {
                if visited.insert(entry.slot) {
                    candidates.push(std::cmp::Reverse(entry));
                    if allow(entry.slot) {
                        results.push(entry);
                    }
                }
            }
            while let Some(std::cmp::Reverse(current)) = candidates.pop() {
                let bound = if results.len() >= ef {
                    results.peek().map_or(f32::INFINITY, |w| w.distance)
                } else {
                    f32::INFINITY
                };
                if current.distance > bound {
                    break;
                }
                let mut fresh = [0u32; M0];
                let mut count = 0;
                for &n in self.links(current.slot, layer) {
                    if visited.insert(n) {
                        fresh[count] = n;
                        count += 1;
                    }
                }
                self.for_each_prefetched(&fresh[..count], |n| {
                    let distance = self.distance(query, n);
                    let worst = if results.len() >= ef {
                        results.peek().map_or(f32::INFINITY, |w| w.distance)
                    } else {
                        f32::INFINITY
                    };
                    if distance < worst {
                        candidates.push(std::cmp::Reverse(Scored { distance, slot: n }));
                        if allow(n) {
                            results.push(Scored { distance, slot: n });
                            if results.len() > ef {
                                results.pop();
                            }
                        }
                    }
                });
            }
            results.into_sorted_vec()
        })
    }

    /// The greedy descent through the upper layers: where the search of layer 0 starts, and the
    /// cosine similarity of that point to the query (how far the query lies from the data).
    pub fn descend(&self, query: &[f32]) -> Option<(u32, f32)> {
        let entry = self.entry?;
        let mut nearest = Scored { distance: self.distance(query, entry), slot: entry };
        for layer in (1..=self.max_level()).rev() {
            nearest = self.greedy(query, nearest, layer);
        }
        Some((nearest.slot, 1.0 - nearest.distance))
    }

    /// The `ef` nearest slots to `query` that `allow` accepts, searching layer 0 from `start` (from
    /// [`Graph::descend`]), nearest first, with f16-accurate cosine similarities.
    pub fn search_from(&self, query: &[f32], start: u32, ef: usize, allow: &dyn Fn(u32) -> bool) -> Vec<(u32, f32)> {
        let start = Scored { distance: self.distance(query, start), slot: start };
        self.search_layer(query, &[start], ef, 0, allow).into_iter().map(|s| (s.slot, 1.0 - s.distance)).collect()
    }
}

/// A slot's top layer: floor(-ln(U) / ln(M)), hnswlib's distribution, from a hash of the slot so
/// that a rebuild of the same vectors gives the same graph.
fn random_level(slot: u32) -> u8 {
    let mut z = u64::from(slot).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let uniform = ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    (-uniform.ln() / (M as f64).ln()).floor().min(15.0) as u8
}

/// Which slots a search has seen: one bit per slot, cleared when a search starts. A bit, not a
/// stamp per slot (no clearing, but 4 bytes each): at a million pictures a stamp array is 4 MB
/// and its checks missed the core's cache; the bits are 125 KB, and clearing them costs less than
/// the misses did (4,000 searches of 1M pictures on one Zen 3 core: 2-3% less time).
struct Visited {
    bits: Vec<u64>,
}

impl Visited {
    fn start(&mut self, len: usize) {
        self.bits.clear();
        self.bits.resize(len.div_ceil(64), 0);
    }

    /// True the first time a slot is seen in this search.
    fn insert(&mut self, slot: u32) -> bool {
        let (word, bit) = (slot as usize / 64, 1u64 << (slot % 64));
        let fresh = self.bits[word] & bit == 0;
        self.bits[word] |= bit;
        fresh
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { bits: Vec::new() }) };
}

/// Asks for a vector's cache lines ahead of their use.
#[inline(always)]
fn prefetch(vector: &[f16]) {
    #[cfg(target_arch = "x86_64")]
    for line in vector.chunks(32) {
        // SAFETY: a prefetch reads nothing architecturally; the address is inside the slice.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = vector;
}

/// Dot product of an f32 query with an f16 vector, in f32.
fn dot(query: &[f32], vector: &[f16]) -> f32 {
    debug_assert_eq!(query.len(), vector.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { dot_avx512(query, vector) };
        }
        if has_avx2_fma_f16c() {
            // SAFETY: the CPU has AVX2, FMA and F16C, checked just above.
            return unsafe { dot_avx2(query, vector) };
        }
    }
    dot_portable(query, vector)
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma_f16c() -> bool {
    std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c")
}

/// Dot product of two f16 vectors, in f32 (the links between points, while building).
fn dot_halves(a: &[f16], b: &[f16]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { dot_halves_avx512(a, b) };
        }
        if has_avx2_fma_f16c() {
            // SAFETY: the CPU has AVX2, FMA and F16C, checked just above. Without it, converting
            // each half on its own made this product ~75% of a build's time.
            return unsafe { dot_halves_avx2(a, b) };
        }
    }
    dot_halves_portable(a, b)
}

fn dot_halves_portable(a: &[f16], b: &[f16]) -> f32 {
    let (mut wide_a, mut wide_b) = ([0f32; PORTABLE_STEP], [0f32; PORTABLE_STEP]);
    a.chunks(PORTABLE_STEP)
        .zip(b.chunks(PORTABLE_STEP))
        .map(|(a, b)| {
            let (wide_a, wide_b) = (&mut wide_a[..a.len()], &mut wide_b[..b.len()]);
            a.convert_to_f32_slice(wide_a);
            b.convert_to_f32_slice(wide_b);
            dot_f32(wide_a, wide_b)
        })
        .sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_halves_avx512(a: &[f16], b: &[f16]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut i = 0;
    // Two accumulators hide the FMA latency.
    while i + 32 <= n {
        let x0 = _mm512_cvtph_ps(_mm256_loadu_si256(a.as_ptr().add(i).cast()));
        let y0 = _mm512_cvtph_ps(_mm256_loadu_si256(b.as_ptr().add(i).cast()));
        let x1 = _mm512_cvtph_ps(_mm256_loadu_si256(a.as_ptr().add(i + 16).cast()));
        let y1 = _mm512_cvtph_ps(_mm256_loadu_si256(b.as_ptr().add(i + 16).cast()));
        s0 = _mm512_fmadd_ps(x0, y0, s0);
        s1 = _mm512_fmadd_ps(x1, y1, s1);
        i += 32;
    }
    if i + 16 <= n {
        let x = _mm512_cvtph_ps(_mm256_loadu_si256(a.as_ptr().add(i).cast()));
        let y = _mm512_cvtph_ps(_mm256_loadu_si256(b.as_ptr().add(i).cast()));
        s0 = _mm512_fmadd_ps(x, y, s0);
        i += 16;
    }
    let mut total = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    while i < n {
        total += a[i].to_f32() * b[i].to_f32();
        i += 1;
    }
    total
}

/// Values widened to f32 per step by the portable products. `half` widens a slice with the CPU's
/// own instructions where it has them (F16C; NEON's on ARM), checking for them once per call;
/// `to_f32` checks and calls per value, which made the product 5.4× slower (measured on x86 with
/// F16C: 870 against 161 ns for 512 dimensions), and that is the path ARM takes.
const PORTABLE_STEP: usize = 64;

fn dot_portable(query: &[f32], vector: &[f16]) -> f32 {
    let mut wide = [0f32; PORTABLE_STEP];
    query
        .chunks(PORTABLE_STEP)
        .zip(vector.chunks(PORTABLE_STEP))
        .map(|(query, vector)| {
            let wide = &mut wide[..vector.len()];
            vector.convert_to_f32_slice(wide);
            dot_f32(query, wide)
        })
        .sum()
}

/// In eight independent sums, so that the compiler vectorises it.
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0f32; 8];
    let (a, b) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a.remainder().iter().zip(b.remainder()).map(|(x, y)| x * y).sum();
    for (a, b) in a.zip(b) {
        for i in 0..8 {
            sums[i] += a[i] * b[i];
        }
    }
    sums.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(query: &[f32], vector: &[f16]) -> f32 {
    use std::arch::x86_64::*;
    let n = query.len().min(vector.len());
    let (mut a, mut b) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut i = 0;
    // Two accumulators hide the FMA latency.
    while i + 32 <= n {
        let h0 = _mm256_loadu_si256(vector.as_ptr().add(i).cast());
        let h1 = _mm256_loadu_si256(vector.as_ptr().add(i + 16).cast());
        a = _mm512_fmadd_ps(_mm512_loadu_ps(query.as_ptr().add(i)), _mm512_cvtph_ps(h0), a);
        b = _mm512_fmadd_ps(_mm512_loadu_ps(query.as_ptr().add(i + 16)), _mm512_cvtph_ps(h1), b);
        i += 32;
    }
    let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(a, b));
    while i < n {
        sum += query[i] * vector[i].to_f32();
        i += 1;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_halves_avx2(a: &[f16], b: &[f16]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    // Two accumulators hide the FMA latency.
    while i + 16 <= n {
        let x0 = _mm256_cvtph_ps(_mm_loadu_si128(a.as_ptr().add(i).cast()));
        let y0 = _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().add(i).cast()));
        let x1 = _mm256_cvtph_ps(_mm_loadu_si128(a.as_ptr().add(i + 8).cast()));
        let y1 = _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().add(i + 8).cast()));
        s0 = _mm256_fmadd_ps(x0, y0, s0);
        s1 = _mm256_fmadd_ps(x1, y1, s1);
        i += 16;
    }
    let mut total = sum_lanes(_mm256_add_ps(s0, s1));
    while i < n {
        total += a[i].to_f32() * b[i].to_f32();
        i += 1;
    }
    total
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn sum_lanes(v: std::arch::x86_64::__m256) -> f32 {
    let mut lanes = [0f32; 8];
    std::arch::x86_64::_mm256_storeu_ps(lanes.as_mut_ptr(), v);
    lanes.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(query: &[f32], vector: &[f16]) -> f32 {
    use std::arch::x86_64::*;
    let n = query.len().min(vector.len());
    let (mut a, mut b) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    while i + 16 <= n {
        let h0 = _mm_loadu_si128(vector.as_ptr().add(i).cast());
        let h1 = _mm_loadu_si128(vector.as_ptr().add(i + 8).cast());
        a = _mm256_fmadd_ps(_mm256_loadu_ps(query.as_ptr().add(i)), _mm256_cvtph_ps(h0), a);
        b = _mm256_fmadd_ps(_mm256_loadu_ps(query.as_ptr().add(i + 8)), _mm256_cvtph_ps(h1), b);
        i += 16;
    }
    let mut sum = sum_lanes(_mm256_add_ps(a, b));
    while i < n {
        sum += query[i] * vector[i].to_f32();
        i += 1;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every dot-product path this CPU can run agrees with an f64 sum, odd lengths included (the
    /// recall tests only reach the widest path the machine has).
    #[test]
    fn every_dot_product_path_matches_an_exact_sum() {
        for len in [1, 7, 16, 31, 48, 64, 513] {
            let a: Vec<f32> = (0..len).map(|i| (i * 37 % 101) as f32 / 50.0 - 1.0).collect();
            let h: Vec<f16> = (0..len).map(|i| f16::from_f32((i * 53 % 89) as f32 / 44.0 - 1.0)).collect();
            let exact: f64 = a.iter().zip(&h).map(|(x, y)| f64::from(*x) * f64::from(y.to_f32())).sum();
            // Two different f16 vectors: a product that read one of them twice would not match.
            let g: Vec<f16> = a.iter().map(|x| f16::from_f32(*x)).collect();
            let halves: f64 = g.iter().zip(&h).map(|(x, y)| f64::from(x.to_f32()) * f64::from(y.to_f32())).sum();
            let close = |got: f32, want: f64| (f64::from(got) - want).abs() <= 1e-4 * (1.0 + want.abs());
            assert!(close(dot_portable(&a, &h), exact), "portable, len {len}");
            assert!(close(dot(&a, &h), exact), "dispatched, len {len}");
            assert!(close(dot_halves(&g, &h), halves), "halves, len {len}");
            assert!(close(dot_halves_portable(&g, &h), halves), "portable halves, len {len}");
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: checked just above.
                    assert!(close(unsafe { dot_avx512(&a, &h) }, exact), "avx512, len {len}");
                    // SAFETY: checked just above.
                    assert!(close(unsafe { dot_halves_avx512(&g, &h) }, halves), "avx512 halves, len {len}");
                }
                if has_avx2_fma_f16c() {
                    // SAFETY: checked just above.
                    assert!(close(unsafe { dot_avx2(&a, &h) }, exact), "avx2, len {len}");
                    assert!(close(unsafe { dot_halves_avx2(&g, &h) }, halves), "avx2 halves, len {len}");
                }
            }
        }
    }
}
