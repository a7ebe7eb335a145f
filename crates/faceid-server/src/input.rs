//! The face inputs of a request: `data:` URIs, or http(s) URLs fetched behind a guard (time
//! limits, a size cap, a redirect limit, and no loopback, private, link-local or metadata
//! addresses unless allowed).

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};
use std::time::Duration;

use base64::Engine;
use faceid_face::{FaceImage, ImageLimits, ZipImages, ZipLimits};
use faceid_fal::FalRequest;
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
    /// `host:port` entries reachable even when private or loopback (`127.0.0.1:8080`,
    /// `[::1]:9000`, `images.lan:443`); a bare host (`images.lan`) opens ports 80 and 443 only.
    /// The list applies to every redirect hop and to webhooks.
    pub allow_hosts: Vec<String>,
    /// Largest download in bytes.
    pub max_bytes: u64,
    /// Whole-transfer time limit.
    pub timeout: Duration,
    /// Most redirects followed.
    pub max_redirects: u32,
    /// Most requests whose URLs are fetched at once (each fetch runs before its request
    /// queues for a worker, so a slow URL delays only its own request).
    pub concurrency: usize,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_hosts: Vec::new(),
            max_bytes: 32 << 20,
            timeout: Duration::from_secs(20),
            max_redirects: 3,
            concurrency: 8,
        }
    }
}

/// The bytes fetched for the http(s) URL fields of a request, or why each fetch failed
/// (`None`: the field is not a URL, or was not fetched).
#[derive(Debug, Default)]
pub struct Fetched {
    /// `face_image_url`.
    pub face: Option<Result<Vec<u8>, InputError>>,
    /// `face_images_data_url`.
    pub zip: Option<Result<Vec<u8>, InputError>>,
}

fn is_http(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// Whether a request has http(s) URLs to fetch.
pub fn needs_fetch(input: &FalRequest) -> bool {
    [&input.face_image_url, &input.face_images_data_url]
        .into_iter()
        .any(|url| url.as_deref().is_some_and(is_http))
}

/// Fetches the http(s) URLs of a request (blocking; data URIs are left for later).
pub fn fetch_urls(input: &FalRequest, policy: &FetchPolicy) -> Fetched {
    let get = |url: &Option<String>, field| {
        url.as_deref()
            .filter(|url| is_http(url))
            .map(|url| load(url, field, policy))
    };
    Fetched {
        face: get(&input.face_image_url, "face_image_url"),
        zip: get(&input.face_images_data_url, "face_images_data_url"),
    }
}

/// Why the face images of a request cannot be used.
#[derive(Debug)]
pub enum FaceInputError {
    /// A URL could not be fetched or its content decoded.
    Input(InputError),
    /// An image was read, but face analysis failed on it (`field` names where it came from).
    Face {
        /// `face_image_url` or `face_images_data_url`.
        field: &'static str,
        /// What went wrong.
        error: faceid_face::FaceError,
    },
}

impl From<InputError> for FaceInputError {
    fn from(e: InputError) -> Self {
        Self::Input(e)
    }
}

/// Hands each face image of a request to `visit`, one at a time: the single image, then every
/// image of the zip, each decoded only after `visit` returned for the one before (from what was
/// `fetched` for the request where given). Returns how many images were visited.
pub fn for_each_face_image(
    input: &FalRequest,
    policy: &FetchPolicy,
    fetched: Option<Fetched>,
    mut visit: impl FnMut(FaceImage) -> Result<(), faceid_face::FaceError>,
) -> Result<usize, FaceInputError> {
    let limits = ImageLimits::default();
    let mut fetched = fetched.unwrap_or_default();
    let mut count = 0;
    if let Some(url) = &input.face_image_url {
        let field = "face_image_url";
        let bytes = match fetched.face.take() {
            Some(result) => result?,
            None => load(url, field, policy)?,
        };
        let image = FaceImage::from_bytes(field, &bytes, &limits).map_err(|e| InputError {
            field,
            message: format!("not a readable image: {e}"),
            kind: "image_load_error",
        })?;
        drop(bytes);
        visit(image).map_err(|error| FaceInputError::Face { field, error })?;
        count += 1;
    }
    if let Some(url) = &input.face_images_data_url {
        let field = "face_images_data_url";
        let bytes = match fetched.zip.take() {
            Some(result) => result?,
            None => load(url, field, policy)?,
        };
        let unreadable = |e: faceid_face::FaceError| InputError {
            field,
            message: format!("not a readable zip of face images: {e}"),
            kind: "zip_load_error",
        };
        for image in
            ZipImages::new(field, &bytes, &ZipLimits::default(), &limits).map_err(unreadable)?
        {
            let image = image.map_err(unreadable)?;
            visit(image).map_err(|error| FaceInputError::Face { field, error })?;
            count += 1;
        }
    }
    Ok(count)
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

/// The one answer for a URL that is not allowed or cannot be reached, whatever the reason, so
/// that answers do not tell which internal hosts and ports exist (details go to the log).
pub const UNREACHABLE: &str =
    "the URL cannot be fetched: it is not reachable from this server, or not allowed";

/// Whether an address is one a server must not be made to reach: loopback, private,
/// link-local (cloud metadata lives at 169.254.169.254), unspecified, multicast, shared,
/// reserved or unique-local ranges, and IPv6 addresses that embed such an IPv4 address
/// (IPv4-mapped, -compatible and -translated, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`, Teredo
/// `2001::/32`).
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            if embedded_ipv4(v6).into_iter().any(is_internal_v4) {
                return true;
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // IPv4-compatible (deprecated, never routed): all of ::/96.
                || s[..6] == [0; 6]
                // Unique local fc00::/7, link-local fe80::/10, site-local fec0::/10.
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                // Documentation 2001:db8::/32, discard-only 100::/64, local-use NAT64
                // 64:ff9b:1::/48.
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x0100 && s[1..4] == [0; 3])
                || (s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 0x0001)
        }
    }
}

fn is_internal_v4(v4: Ipv4Addr) -> bool {
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
        || (o[0] == 198 && (18..20).contains(&o[1]))
        || o[0] >= 240
}

/// The IPv4 addresses an IPv6 address stands for.
fn embedded_ipv4(v6: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let last = v4(s[6], s[7]);
    if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible).
        vec![last]
    } else if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        // ::ffff:0:a.b.c.d (translated).
        vec![last]
    } else if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        // NAT64 well-known prefix.
        vec![last]
    } else if s[0] == 0x2002 {
        // 6to4: the IPv4 address follows the prefix.
        vec![v4(s[1], s[2])]
    } else if s[0] == 0x2001 && s[1] == 0 {
        // Teredo: the server, and the client's address inverted.
        vec![v4(s[2], s[3]), v4(!s[6], !s[7])]
    } else {
        Vec::new()
    }
}

/// A host of the allow-list and the ports it opens.
struct Allowed {
    host: String,
    ports: Vec<u16>,
}

/// Reads an allow-list entry: `host:port`, `[v6]:port`, or a bare host (`host`, `v6`,
/// `[v6]`), which opens ports 80 and 443 only.
fn parse_allowed(entry: &str) -> Option<Allowed> {
    let entry = entry.trim();
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else if entry.matches(':').count() == 1 {
        let (host, port) = entry.split_once(':')?;
        (host, Some(port))
    } else {
        (entry, None)
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return None;
    }
    let ports = match port {
        Some(port) => vec![port.parse().ok().filter(|p| *p != 0)?],
        None => vec![80, 443],
    };
    Some(Allowed {
        host: normalize_host(host),
        ports,
    })
}

/// A host as compared: lower case, no brackets or trailing dot, addresses in canonical form.
fn normalize_host(host: &str) -> String {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => host,
    }
}

impl FetchPolicy {
    /// The allow-list entries that cannot be read.
    pub fn invalid_allow_hosts(&self) -> Vec<String> {
        self.allow_hosts
            .iter()
            .filter(|e| parse_allowed(e).is_none())
            .cloned()
            .collect()
    }

    /// Whether `host:port` is allow-listed.
    fn allows(&self, host: &str, port: u16) -> bool {
        let host = normalize_host(host);
        self.allow_hosts
            .iter()
            .filter_map(|e| parse_allowed(e))
            .any(|a| a.host == host && a.ports.contains(&port))
    }
}

/// The port a URL reaches.
fn port_of(uri: &Uri) -> u16 {
    uri.port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        })
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
        let response = agent.get(&current).call().map_err(|e| {
            tracing::debug!(url = %current, "fetch failed: {e}");
            UNREACHABLE.to_string()
        })?;
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

/// Refuses URLs that are malformed (saying why) and URLs whose host:port is not allow-listed
/// and resolves to an internal address, or does not resolve ([`UNREACHABLE`]); the resolver
/// of [`guarded_agent`] enforces the same at connect.
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
    let port = port_of(&uri);
    if policy.allows(host, port) {
        return Ok(());
    }
    let addrs: Vec<IpAddr> = match (host, port).to_socket_addrs() {
        Ok(addrs) => addrs.map(|a| a.ip()).collect(),
        Err(e) => {
            tracing::debug!(host, "cannot resolve: {e}");
            return Err(UNREACHABLE.into());
        }
    };
    if let Some(bad) = addrs.iter().find(|ip| is_internal(**ip)) {
        tracing::debug!(host, port, %bad, "refused: an internal address");
        return Err(UNREACHABLE.into());
    }
    Ok(())
}

/// Resolves names like the default resolver, then refuses internal addresses (unless the
/// host:port is allow-listed). The connection is made to the addresses this returns, so a name
/// that resolves differently between the check and the connection still cannot reach inside.
struct GuardedResolver {
    inner: ureq::unversioned::resolver::DefaultResolver,
    policy: FetchPolicy,
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
        if self.policy.allows(host, port_of(uri)) {
            return Ok(addrs);
        }
        if let Some(bad) = addrs.iter().find(|a| is_internal(a.ip())) {
            tracing::debug!(host, bad = %bad.ip(), "refused at connect: an internal address");
            return Err(ureq::Error::BadUri(UNREACHABLE.into()));
        }
        Ok(addrs)
    }
}

impl std::fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("allow_hosts", &self.policy.allow_hosts)
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
            policy: policy.clone(),
        },
    )
}
