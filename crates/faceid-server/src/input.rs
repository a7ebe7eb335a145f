//! The face inputs of a request: `data:` URIs, or http(s) URLs fetched behind a guard (time
//! limits, a size cap, a redirect limit, and no loopback, private, link-local or metadata
//! addresses unless allowed).

use std::io::Read;
use std::net::{IpAddr, ToSocketAddrs};
use std::time::Duration;

use base64::Engine;
use faceid_face::{FaceImage, ImageLimits, ZipLimits, read_zip};
use faceid_pipeline::fal::FalRequest;
use ureq::http::Uri;

/// Why an input could not be used; becomes a 422 naming the field.
#[derive(Debug)]
pub struct InputError {
    /// The field (`face_image_url`).
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
    /// The error type.
    pub kind: &'static str,
}

/// How URLs are fetched.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Whether http(s) URLs are fetched at all.
    pub enabled: bool,
    /// Hosts or addresses reachable even when private or loopback (`127.0.0.1`, `images.lan`).
    pub allow_hosts: Vec<String>,
    /// Largest download in bytes.
    pub max_bytes: u64,
    /// Whole-transfer time limit.
    pub timeout: Duration,
    /// Most redirects followed.
    pub max_redirects: u32,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_hosts: Vec::new(),
            max_bytes: 32 << 20,
            timeout: Duration::from_secs(20),
            max_redirects: 3,
        }
    }
}

/// The face images of a request: the single image and/or every image of the zip.
pub fn face_images(input: &FalRequest, policy: &FetchPolicy) -> Result<Vec<FaceImage>, InputError> {
    let limits = ImageLimits::default();
    let mut images = Vec::new();
    if let Some(url) = &input.face_image_url {
        let field = "face_image_url";
        let bytes = load(url, field, policy)?;
        images.push(
            FaceImage::from_bytes(field, &bytes, &limits).map_err(|e| InputError {
                field,
                message: format!("not a readable image: {e}"),
                kind: "image_load_error",
            })?,
        );
    }
    if let Some(url) = &input.face_images_data_url {
        let field = "face_images_data_url";
        let bytes = load(url, field, policy)?;
        let found =
            read_zip(field, &bytes, &ZipLimits::default(), &limits).map_err(|e| InputError {
                field,
                message: format!("not a readable zip of face images: {e}"),
                kind: "zip_load_error",
            })?;
        images.extend(found);
    }
    Ok(images)
}

/// The bytes behind a data URI or URL.
pub fn load(url: &str, field: &'static str, policy: &FetchPolicy) -> Result<Vec<u8>, InputError> {
    let fail = |message: String, kind: &'static str| InputError {
        field,
        message,
        kind,
    };
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').ok_or_else(|| {
            fail(
                "a data URI needs a comma before its data".into(),
                "url_error",
            )
        })?;
        if !meta.ends_with(";base64") {
            return Err(fail(
                "only base64 data URIs are accepted (data:<mime>;base64,...)".into(),
                "url_error",
            ));
        }
        return base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| {
                fail(
                    format!("the data URI is not valid base64: {e}"),
                    "url_error",
                )
            });
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return fetch(url, policy).map_err(|m| fail(m, "url_error"));
    }
    Err(fail(
        "expected an http(s) URL or a data: URI".into(),
        "url_error",
    ))
}

/// Whether an address is one a server must not be made to reach: loopback, private,
/// link-local (cloud metadata lives at 169.254.169.254), unspecified, multicast, shared or
/// unique-local ranges.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Fetches a URL within the policy, checking every hop's addresses.
fn fetch(url: &str, policy: &FetchPolicy) -> Result<Vec<u8>, String> {
    if !policy.enabled {
        return Err(
            "fetching URLs is disabled on this server; send the image as a data: URI".into(),
        );
    }
    let config = ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(policy.timeout))
        .build();
    let agent = guarded_agent(config, policy);
    let mut current = url.to_string();
    for _ in 0..=policy.max_redirects {
        check_host(&current, policy)?;
        let response = agent
            .get(&current)
            .call()
            .map_err(|e| format!("cannot fetch {current}: {e}"))?;
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| format!("{current} redirects without a Location"))?;
            current = resolve_location(&current, location)?;
            continue;
        }
        if status != 200 {
            return Err(format!("{current} answered HTTP {status}"));
        }
        let mut bytes = Vec::new();
        response
            .into_body()
            .into_reader()
            .take(policy.max_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read {current}: {e}"))?;
        if bytes.len() as u64 > policy.max_bytes {
            return Err(format!(
                "{current} is larger than the {} bytes this server accepts",
                policy.max_bytes
            ));
        }
        return Ok(bytes);
    }
    Err(format!(
        "{url} redirects more than {} times",
        policy.max_redirects
    ))
}

fn resolve_location(base: &str, location: &str) -> Result<String, String> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return Ok(location.to_string());
    }
    let base: Uri = base.parse().map_err(|_| format!("bad URL {base}"))?;
    match (
        location.starts_with('/'),
        base.scheme_str(),
        base.authority(),
    ) {
        (true, Some(scheme), Some(authority)) => Ok(format!("{scheme}://{authority}{location}")),
        _ => Err(format!("unsupported redirect target {location}")),
    }
}

/// Refuses URLs whose host resolves to an internal address (unless allow-listed), with a
/// message naming the address; the resolver of [`guarded_agent`] enforces the same at connect.
pub(crate) fn check_host(url: &str, policy: &FetchPolicy) -> Result<(), String> {
    let uri: Uri = url
        .parse()
        .map_err(|_| format!("{url} is not a valid URL"))?;
    let scheme = uri.scheme_str().unwrap_or_default();
    if scheme != "http" && scheme != "https" {
        return Err(format!("{scheme}: URLs are not fetched"));
    }
    let authority = uri.authority().ok_or(format!("{url} has no host"))?;
    if authority.as_str().contains('@') {
        return Err("URLs with credentials are not fetched".into());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{url} has no host"));
    }
    if policy
        .allow_hosts
        .iter()
        .any(|a| a.eq_ignore_ascii_case(host))
    {
        return Ok(());
    }
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let addrs: Vec<IpAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .map(|a| a.ip())
        .collect();
    if let Some(bad) = addrs.iter().find(|ip| is_internal(**ip)) {
        return Err(format!(
            "{host} resolves to {bad}, an internal address this server does not fetch from"
        ));
    }
    Ok(())
}

/// Resolves names like the default resolver, then refuses internal addresses (unless the host
/// is allow-listed). The connection is made to the addresses this returns, so a name that
/// resolves differently between the check and the connection still cannot reach inside.
struct GuardedResolver {
    inner: ureq::unversioned::resolver::DefaultResolver,
    allow_hosts: Vec<String>,
}

impl ureq::unversioned::resolver::Resolver for GuardedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let addrs = self.inner.resolve(uri, config, timeout)?;
        let host = uri
            .host()
            .unwrap_or("")
            .trim_start_matches('[')
            .trim_end_matches(']');
        if self
            .allow_hosts
            .iter()
            .any(|a| a.eq_ignore_ascii_case(host))
        {
            return Ok(addrs);
        }
        if let Some(bad) = addrs.iter().find(|a| is_internal(a.ip())) {
            return Err(ureq::Error::BadUri(format!(
                "{host} resolves to {}, an internal address this server does not fetch from",
                bad.ip()
            )));
        }
        Ok(addrs)
    }
}

impl std::fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("allow_hosts", &self.allow_hosts)
            .finish()
    }
}

/// An agent whose connections only reach addresses the policy allows.
pub(crate) fn guarded_agent(config: ureq::config::Config, policy: &FetchPolicy) -> ureq::Agent {
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::new(),
        GuardedResolver {
            inner: Default::default(),
            allow_hosts: policy.allow_hosts.clone(),
        },
    )
}
