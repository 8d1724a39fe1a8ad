//! The hub's TLS material: its own certificate authority (made once by
//! `telltale-hub tls init`, kept in a folder of the config), the device
//! certificates it issues (subject `O` = the device's tenant, which the MQTT
//! broker turns into the device's topic prefix), and a server certificate
//! that can be read again while the hub runs ([`ReloadableCert`], for
//! HTTPS; the MQTT broker reads its files at each connection).
//!
//! It never listens, never accepts connections and never logs: the API and
//! the broker crates use what it builds.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::crypto::ring::sign::any_supported_type;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use time::{Duration, OffsetDateTime};

/// The CA's certificate, in the TLS folder: what clients trust.
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key (mode 0600): signs server and device certificates.
pub const CA_KEY: &str = "ca.key";
/// The hub's server certificate, signed by the CA.
pub const SERVER_CERT: &str = "server.pem";
/// The server certificate's private key (mode 0600).
pub const SERVER_KEY: &str = "server.key";

/// The CA's subject. Certificates it issues name it as their issuer, so it
/// must stay the same between [`init`] and [`Ca::load`].
const CA_NAME: &str = "Telltale hub CA";
/// How long the CA and the certificates it issues are valid.
const CA_DAYS: i64 = 20 * 365;
const SERVER_DAYS: i64 = 5 * 365;
const DEVICE_DAYS: i64 = 10 * 365;

/// Errors of the TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0} exists; tls init never overwrites (move the folder's files away first)")]
    Exists(PathBuf),
    #[error("no CA in {0} (run `telltale-hub tls init` first)")]
    NoCa(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Pem { path: PathBuf, what: String },
    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("tenant {0:?} must be 1 to 64 ASCII letters and digits")]
    BadTenant(String),
    #[error("{0:?} is not a host name or an IP address")]
    BadName(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes a new file that only its owner can read (0600 on Unix); refuses
/// to replace one.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    write_new(path, contents, 0o600)
}

/// Writes a new file readable by all (0644); refuses to replace one.
pub fn write_public(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    write_new(path, contents, 0o644)
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = o.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => TlsError::Exists(path.to_owned()),
        _ => TlsError::Io {
            path: path.to_owned(),
            source: e,
        },
    })?;
    f.write_all(contents).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn serial() -> SerialNumber {
    let mut b: [u8; 16] = rand::random();
    // A positive DER integer.
    b[0] &= 0x7f;
    SerialNumber::from_slice(&b)
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    // A little slack for clocks that are behind.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
}

/// The CA's parameters: the same at init and at each load, so the issuer
/// name and key identifier of what it signs match its certificate.
fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.key_identifier_method = rcgen::KeyIdMethod::Sha256;
    p
}

/// What [`init`] wrote.
#[derive(Debug, Clone)]
pub struct Initialized {
    /// The files, in the order written.
    pub files: Vec<PathBuf>,
    /// The server certificate's names (those asked for, then `localhost`,
    /// `127.0.0.1` and `::1`).
    pub names: Vec<String>,
}

/// Makes a CA and a server certificate signed by it in `dir` (created if
/// missing, mode 0700): [`CA_CERT`], [`CA_KEY`], [`SERVER_CERT`],
/// [`SERVER_KEY`]. The server certificate names `sans` (host names or IP
/// addresses) and `localhost`, `127.0.0.1` and `::1`. Refuses if any of
/// the four files exists.
pub fn init(dir: &Path, sans: &[String]) -> Result<Initialized, TlsError> {
    for f in [CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY] {
        let p = dir.join(f);
        if p.exists() {
            return Err(TlsError::Exists(p));
        }
    }
    let mut names: Vec<String> = Vec::new();
    for n in sans
        .iter()
        .map(String::as_str)
        .chain(["localhost", "127.0.0.1", "::1"])
    {
        if !names.iter().any(|m| m == n) {
            names.push(n.to_owned());
        }
    }
    let mut server = CertificateParams::new(names.clone()).map_err(|_| {
        TlsError::BadName(
            names
                .iter()
                .find(|n| CertificateParams::new(vec![(*n).clone()]).is_err())
                .cloned()
                .unwrap_or_default(),
        )
    })?;

    let ca_key = KeyPair::generate()?;
    let mut ca = ca_params();
    ca.serial_number = Some(serial());
    validity(&mut ca, CA_DAYS);
    let ca_cert = ca.self_signed(&ca_key)?;

    let server_key = KeyPair::generate()?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0].as_str());
    server.distinguished_name = dn;
    server.serial_number = Some(serial());
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    validity(&mut server, SERVER_DAYS);
    let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key)?;

    create_private_dir(dir)?;
    let files = [
        (CA_KEY, ca_key.serialize_pem(), true),
        (CA_CERT, ca_cert.pem(), false),
        (SERVER_KEY, server_key.serialize_pem(), true),
        (SERVER_CERT, server_cert.pem(), false),
    ];
    let mut written = Vec::new();
    for (name, pem, private) in files {
        let p = dir.join(name);
        if private {
            write_private(&p, pem.as_bytes())?;
        } else {
            write_public(&p, pem.as_bytes())?;
        }
        written.push(p);
    }
    Ok(Initialized {
        files: written,
        names,
    })
}

/// Creates `dir` (and its parents) if missing; a new folder is 0700.
pub fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(io(dir))
}

/// The hub's CA, loaded to issue certificates.
pub struct Ca {
    /// The CA certificate as rcgen rebuilds it for signing (same subject
    /// and key as the file; only its name and key matter to what it signs).
    cert: rcgen::Certificate,
    /// The CA's key.
    key: KeyPair,
    /// The CA certificate as in [`CA_CERT`], for clients to trust.
    pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// A device's client certificate and key, PEM.
#[derive(Clone)]
pub struct DeviceCert {
    /// The certificate: subject `CN` = device id, `O` = tenant.
    pub cert_pem: String,
    /// Its private key (PKCS#8). Secret.
    pub key_pem: String,
}

impl std::fmt::Debug for DeviceCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCert").finish_non_exhaustive()
    }
}

impl Ca {
    /// Whether `dir` holds a CA (its certificate and key).
    pub fn exists(dir: &Path) -> bool {
        dir.join(CA_CERT).is_file() && dir.join(CA_KEY).is_file()
    }

    /// Loads the CA made by [`init`] from `dir`.
    pub fn load(dir: &Path) -> Result<Ca, TlsError> {
        if !Ca::exists(dir) {
            return Err(TlsError::NoCa(dir.to_owned()));
        }
        let key_path = dir.join(CA_KEY);
        let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::Pem {
            path: key_path.clone(),
            what: e.to_string(),
        })?;
        let cert_path = dir.join(CA_CERT);
        let pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        // The file's certificate must be this key's: compare the public keys.
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem {
            path: cert_path.clone(),
            what: e.to_string(),
        })?;
        let spki = key.public_key_der();
        if !der.windows(spki.len()).any(|w| w == spki.as_slice()) {
            return Err(TlsError::Pem {
                path: cert_path,
                what: format!("is not the certificate of {}", key_path.display()),
            });
        }
        let cert = ca_params().self_signed(&key)?;
        Ok(Ca { cert, key, pem })
    }

    /// The CA certificate (PEM), for clients to trust.
    pub fn cert_pem(&self) -> &str {
        &self.pem
    }

    /// Issues a client certificate for `device` whose subject `O` is
    /// `tenant` (alphanumeric: the broker refuses any other), with a new key.
    pub fn issue_device(&self, tenant: &str, device: &str) -> Result<DeviceCert, TlsError> {
        if tenant.is_empty()
            || tenant.len() > 64
            || !tenant.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(TlsError::BadTenant(tenant.to_owned()));
        }
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, device);
        dn.push(DnType::OrganizationName, tenant);
        p.distinguished_name = dn;
        p.serial_number = Some(serial());
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        validity(&mut p, DEVICE_DAYS);
        let cert = p.signed_by(&key, &self.cert, &self.key)?;
        Ok(DeviceCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Reads a certificate chain and its private key (PEM files) into the
/// form rustls serves.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Pem {
            path: cert.to_owned(),
            what: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: cert.to_owned(),
            what: "no certificate in the file".into(),
        });
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem {
        path: key.to_owned(),
        what: e.to_string(),
    })?;
    let signing = any_supported_type(&der)?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|e| TlsError::Pem {
        path: key.to_owned(),
        what: format!("does not match {}: {e}", cert.display()),
    })?;
    Ok(ck)
}

/// A server certificate read from two files and read again by
/// [`ReloadableCert::reload`] (the hub calls it on SIGHUP): new handshakes
/// get the new certificate, open connections keep theirs.
#[derive(Debug)]
pub struct ReloadableCert {
    /// The certificate chain file.
    cert: PathBuf,
    /// The private key file.
    key: PathBuf,
    /// What handshakes get now.
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    /// Reads the two files.
    pub fn load(cert: &Path, key: &Path) -> Result<ReloadableCert, TlsError> {
        let ck = load_certified_key(cert, key)?;
        Ok(ReloadableCert {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(ck)),
        })
    }

    /// Reads the files again; on an error the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let ck = Arc::new(load_certified_key(&self.cert, &self.key)?);
        match self.current.write() {
            Ok(mut g) => *g = ck,
            Err(poisoned) => *poisoned.into_inner() = ck,
        }
        Ok(())
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    fn get(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// A server config (ring, TLS 1.2 and 1.3, no client certificates) that
/// serves `cert` and offers `alpn` (e.g. `http/1.1`).
pub fn server_config(cert: Arc<ReloadableCert>, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // The ring provider supports the default versions, so this cannot fail;
    // fall back to rustls' defaults rather than unwrap.
    let builder = match rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
    {
        Ok(b) => b,
        Err(_) => rustls::ServerConfig::builder(),
    };
    let mut c = builder.with_no_client_auth().with_cert_resolver(cert);
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_issue_load_and_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = dir.path().join("tls");
        let made = init(&tls, &["hub.example".into(), "10.0.0.5".into()]).expect("init");
        assert_eq!(made.files.len(), 4);
        assert_eq!(
            made.names,
            ["hub.example", "10.0.0.5", "localhost", "127.0.0.1", "::1"]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for (f, mode) in [(CA_KEY, 0o600), (SERVER_KEY, 0o600), (CA_CERT, 0o644)] {
                let m = std::fs::metadata(tls.join(f)).expect("meta").permissions();
                assert_eq!(m.mode() & 0o777, mode, "{f}");
            }
            let m = std::fs::metadata(&tls).expect("meta").permissions();
            assert_eq!(m.mode() & 0o777, 0o700);
        }
        // Never overwrites.
        assert!(matches!(init(&tls, &[]), Err(TlsError::Exists(_))));

        let ca = Ca::load(&tls).expect("load");
        assert!(ca.cert_pem().contains("BEGIN CERTIFICATE"));
        let d = ca.issue_device("t0123abcd", "boiler-1").expect("issue");
        assert!(d.cert_pem.contains("BEGIN CERTIFICATE"));
        assert!(d.key_pem.contains("PRIVATE KEY"));
        assert!(matches!(
            ca.issue_device("t-1", "x"),
            Err(TlsError::BadTenant(_))
        ));

        // The device certificate chains to the CA: rustls' client verifier
        // accepts it.
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).expect("ca der"))
            .expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("verifier");
        let leaf = CertificateDer::from_pem_slice(d.cert_pem.as_bytes()).expect("leaf");
        verifier
            .verify_client_cert(&leaf, &[], rustls_pki_types::UnixTime::now())
            .expect("device certificate verifies against the CA");

        // The server pair loads; a reload with a broken file keeps the old.
        let r = ReloadableCert::load(&tls.join(SERVER_CERT), &tls.join(SERVER_KEY)).expect("load");
        let before = r.get();
        r.reload().expect("reload");
        assert!(!Arc::ptr_eq(&before, &r.get()));
        std::fs::write(tls.join(SERVER_CERT), "junk").expect("write");
        assert!(r.reload().is_err());
        let _ = server_config(Arc::new(r), &[b"http/1.1"]);
    }

    #[test]
    fn a_key_that_is_not_the_cas_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        init(dir.path(), &[]).expect("init");
        let other = tempfile::tempdir().expect("tempdir");
        init(other.path(), &[]).expect("init");
        std::fs::copy(other.path().join(CA_KEY), dir.path().join("k")).expect("copy");
        std::fs::rename(dir.path().join("k"), dir.path().join(CA_KEY)).expect("rename");
        assert!(matches!(Ca::load(dir.path()), Err(TlsError::Pem { .. })));
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(matches!(Ca::load(empty.path()), Err(TlsError::NoCa(_))));
    }
}
