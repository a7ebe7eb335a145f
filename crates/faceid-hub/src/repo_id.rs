//! Hugging Face repository ids as the hub defines them (huggingface_hub's `validate_repo_id`):
//! `namespace/name`, each part of ASCII letters, digits, `-`, `_` and `.`, not starting or
//! ending with `-` or `.`, without `--` or `..`, at most 96 characters. Checked before a name
//! reaches a URL or a cache path.

/// Longest repository id.
pub const MAX_REPO_ID_LEN: usize = 96;

/// Checks a model repository id (`SG161222/Realistic_Vision_V4.0_noVAE`); the error says what
/// is wrong.
pub fn check_repo_id(repo: &str) -> Result<(), String> {
    if repo.len() > MAX_REPO_ID_LEN {
        return Err(format!(
            "a repository id is at most {MAX_REPO_ID_LEN} characters"
        ));
    }
    let Some((namespace, name)) = repo.split_once('/') else {
        return Err("a repository id is `namespace/name`".into());
    };
    for part in [namespace, name] {
        if part.is_empty() {
            return Err("a repository id is `namespace/name`, both parts non-empty".into());
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(
                "a repository id has only ASCII letters, digits, `-`, `_`, `.` and one `/`".into(),
            );
        }
        if part.starts_with(['-', '.']) || part.ends_with(['-', '.']) {
            return Err("a repository id part cannot start or end with `-` or `.`".into());
        }
        if part.contains("--") || part.contains("..") {
            return Err("a repository id cannot contain `--` or `..`".into());
        }
    }
    Ok(())
}
