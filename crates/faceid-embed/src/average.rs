//! Combining ArcFace embeddings: insightface's `normed_embedding` (L2 normalisation), cosine
//! similarity, and the average over several photos of one person (IP-Adapter FaceID's
//! multi-image identity).

/// Scales a vector to unit length (a zero vector stays zero).
pub fn l2_normalize(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

/// Cosine similarity of two vectors.
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// How several normalised embeddings are combined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AverageMode {
    /// Mean of the normalised embeddings, normalised again (a unit vector).
    #[default]
    NormalizedMean,
    /// Plain mean of the normalised embeddings (its length shrinks as the faces disagree).
    Mean,
}

/// Combines normalised embeddings; `None` for an empty list or mismatched lengths.
pub fn average_embeddings(embeddings: &[Vec<f32>], mode: AverageMode) -> Option<Vec<f32>> {
    let first = embeddings.first()?;
    if embeddings.iter().any(|e| e.len() != first.len()) {
        return None;
    }
    let n = embeddings.len() as f32;
    let mean: Vec<f32> = (0..first.len())
        .map(|i| embeddings.iter().map(|e| e[i]).sum::<f32>() / n)
        .collect();
    Some(match mode {
        AverageMode::NormalizedMean => l2_normalize(&mean),
        AverageMode::Mean => mean,
    })
}
