//! CLIP-like synthetic embeddings for testing and benchmarking the vector index where it is
//! hard: text queries are out of distribution for an index of pictures.
//!
//! - Pictures lie in a cone around an image-mean direction (cosine ≈ 0.5 between unrelated
//!   pictures), grouped in *events* (a trip, a party: ≈ 0.8 within one) of geometric sizes;
//!   each event shows one to three of a fixed set of *topics* (what a caption would name).
//!   Some pictures come in *bursts* of near-duplicates (re-encodes, burst shots: ≈ 0.98).
//! - Text queries lie in another cone, around a text-mean direction orthogonal to the image one
//!   (the modality gap), and name a topic: a matching picture scores ≈ 0.3, as with CLIP.
//! - Picture queries are new pictures of existing events (in distribution).
//!
//! Shared by `tests/it/ann.rs` and `benches/ann.rs` (included by path).

pub struct ClipLike {
    pub pictures: Vec<Vec<f32>>,
    pub text_queries: Vec<Vec<f32>>,
    pub picture_queries: Vec<Vec<f32>>,
}

struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }

    fn normal(&mut self) -> f32 {
        ((-2.0 * self.uniform().ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()) as f32
    }

    /// A random direction of length about 1 (entries N(0, 1/dim)).
    fn direction(&mut self, dim: usize) -> Vec<f32> {
        let scale = 1.0 / (dim as f32).sqrt();
        (0..dim).map(|_| self.normal() * scale).collect()
    }
}

fn unit(v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

/// `a * x + b * y + c * z` for vectors of one length.
fn mix(parts: &[(f32, &[f32])]) -> Vec<f32> {
    let mut out = vec![0f32; parts[0].1.len()];
    for (weight, v) in parts {
        for (o, x) in out.iter_mut().zip(*v) {
            *o += weight * x;
        }
    }
    out
}

pub fn generate(pictures: usize, queries: usize, dim: usize, seed: u64) -> ClipLike {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let image_mean = unit(rng.direction(dim));
    // Orthogonal to the image mean: the gap between the two cones.
    let text_mean = {
        let t = rng.direction(dim);
        let along: f32 = t.iter().zip(&image_mean).map(|(a, b)| a * b).sum();
        unit(mix(&[(1.0, &t), (-along, &image_mean)]))
    };
    let topics: Vec<Vec<f32>> = (0..(pictures / 100).clamp(50, 5000)).map(|_| unit(rng.direction(dim))).collect();
    let mut event_topics: Vec<Vec<usize>> = Vec::new();
    let mut event_centres: Vec<Vec<f32>> = Vec::new();
    let picture_of =
        |rng: &mut Rng, centre: &[f32]| unit(mix(&[(0.8, &image_mean), (0.6, centre), (0.5, &rng.direction(dim))]));

    let mut out = Vec::with_capacity(pictures);
    while out.len() < pictures {
        let shown: Vec<usize> = (0..1 + rng.below(3)).map(|_| rng.below(topics.len())).collect();
        let mut centre: Vec<f32> = rng.direction(dim).iter().map(|x| 0.5 * x).collect();
        for &t in &shown {
            centre = mix(&[(1.0, &centre), (1.0 / shown.len() as f32, &topics[t])]);
        }
        let centre = unit(centre);
        event_topics.push(shown);
        event_centres.push(centre.clone());
        // Event sizes: geometric, mean ≈ 40.
        let size = (1.0 - 40.0 * rng.uniform().ln()).min(2000.0) as usize;
        for _ in 0..size {
            let picture = picture_of(&mut rng, &centre);
            // One picture in eight starts a burst of 1-4 near-duplicates.
            let burst = if rng.below(8) == 0 { 1 + rng.below(4) } else { 0 };
            for _ in 0..burst {
                out.push(unit(mix(&[(1.0, &picture), (0.15, &rng.direction(dim))])));
            }
            out.push(picture);
        }
    }
    out.truncate(pictures); // the last event may overshoot

    let text_queries = (0..queries)
        .map(|_| {
            let event = rng.below(event_topics.len());
            let topic = &topics[event_topics[event][rng.below(event_topics[event].len())]];
            unit(mix(&[(0.75, &text_mean), (0.62, topic), (0.25, &rng.direction(dim))]))
        })
        .collect();
    let picture_queries = (0..queries)
        .map(|_| {
            let event = rng.below(event_centres.len());
            picture_of(&mut rng, &event_centres[event].clone())
        })
        .collect();
    ClipLike { pictures: out, text_queries, picture_queries }
}

/// The `k` best ids (indexes into `vectors`) for `query` by exact dot product, best first.
/// Streams with a k-sized list, so a million vectors need no million-entry buffer per query.
pub fn exact_top(vectors: &[Vec<f32>], query: &[f32], k: usize, allow: &dyn Fn(u64) -> bool) -> Vec<u64> {
    let mut best: Vec<(f32, u64)> = Vec::with_capacity(k + 1);
    for (i, v) in vectors.iter().enumerate() {
        let id = i as u64;
        let score = dot(v, query);
        if (best.len() < k || score > best[best.len() - 1].0) && allow(id) {
            let at = best.partition_point(|(s, _)| *s >= score);
            best.insert(at, (score, id));
            best.truncate(k);
        }
    }
    best.into_iter().map(|(_, id)| id).collect()
}

/// Eight independent sums, so the compiler vectorises it (a plain `.sum()` must add in order).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            sums[i] += x[i] * y[i];
        }
    }
    let tail: f32 = a.chunks_exact(8).remainder().iter().zip(b.chunks_exact(8).remainder()).map(|(x, y)| x * y).sum();
    sums.iter().sum::<f32>() + tail
}
