//! `server.tls.acme`.

use super::{absolute_path, positive};
use crate::config::acme::LETS_ENCRYPT;
use crate::config::file::FileAcme;
use crate::config::{AcmeSettings, ConfigError};
use std::path::PathBuf;
use std::time::Duration;

const DEFAULT_STATE_DIR: &str = "/var/lib/edgeproxy/acme";
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(600);

pub(super) fn settings(file: FileAcme) -> Result<AcmeSettings, ConfigError> {
    let key = "server.tls.acme";
    if file.domains.is_empty() {
        return Err(ConfigError::at_key(
            format!("{key}.domains"),
            "the list is empty; give the names the certificate is for, such as [shop.example.com]",
        ));
    }
    let mut domains: Vec<String> = Vec::with_capacity(file.domains.len());
    for (i, domain) in file.domains.iter().enumerate() {
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        if let Err(why) = check_domain(&domain) {
            return Err(ConfigError::at_key(format!("{key}.domains[{i}]"), why));
        }
        if domains.contains(&domain) {
            return Err(ConfigError::at_key(
                format!("{key}.domains[{i}]"),
                format!("`{domain}` is listed twice"),
            ));
        }
        domains.push(domain);
    }
    if let Some(email) = &file.email {
        let (user, host) = email.split_once('@').unwrap_or(("", ""));
        if user.is_empty() || !host.contains('.') || email.contains(char::is_whitespace) {
            return Err(ConfigError::at_key(
                format!("{key}.email"),
                format!("`{email}` is not an email address; the CA writes to it about expiring certificates"),
            ));
        }
    }
    let directory = file.directory.unwrap_or_else(|| LETS_ENCRYPT.to_string());
    if !directory.starts_with("https://") {
        return Err(ConfigError::at_key(
            format!("{key}.directory"),
            format!("`{directory}` is not an https:// URL; Let's Encrypt's is {LETS_ENCRYPT}"),
        ));
    }
    let directory_ca = file
        .directory_ca
        .map(|p| absolute_path(&format!("{key}.directory_ca"), &p, "/etc/edgeproxy/ca.pem"))
        .transpose()?;
    if let Some(ca) = &directory_ca {
        if let Err(e) = std::fs::metadata(ca) {
            return Err(ConfigError::at_key(
                format!("{key}.directory_ca"),
                format!("cannot read {}: {e}", ca.display()),
            ));
        }
    }
    let state_dir = match file.state_dir {
        Some(p) => absolute_path(&format!("{key}.state_dir"), &p, DEFAULT_STATE_DIR)?,
        None => PathBuf::from(DEFAULT_STATE_DIR),
    };
    let renew_before = file
        .renew_before
        .map(|d| positive(&format!("{key}.renew_before"), Some(d), d.0))
        .transpose()?;
    Ok(AcmeSettings {
        domains,
        email: file.email,
        directory,
        directory_ca,
        state_dir,
        renew_before,
        retry_after: positive(
            &format!("{key}.retry_after"),
            file.retry_after,
            DEFAULT_RETRY_AFTER,
        )?,
    })
}

/// A name the CA can check over HTTP-01: letters, digits and hyphens in dot-separated labels;
/// no wildcard (that takes DNS-01) and no IP.
fn check_domain(domain: &str) -> Result<(), String> {
    if domain.starts_with("*.") {
        return Err(format!(
            "`{domain}` is a wildcard, which only DNS-01 challenges can prove; list the names"
        ));
    }
    if domain.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("`{domain}` is an IP address; give a DNS name"));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if domain.len() > 253 || !domain.contains('.') || !domain.split('.').all(label_ok) {
        return Err(format!(
            "`{domain}` is not a DNS name such as shop.example.com"
        ));
    }
    Ok(())
}
