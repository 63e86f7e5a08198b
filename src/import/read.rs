//! Reads certbot's and lego's directories into the inputs of the pure planners. Only
//! reads; every error names the file.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::import::ImportError;
use crate::import::certbot::{self, AccountFiles, CertbotFiles, LineageFiles};
use crate::import::lego::{LegoAccountFiles, LegoCertificateFiles, LegoFiles};
use crate::store::SecretPem;

/// Certificates that could not be read, by name, and why; the others are imported.
pub type Unreadable = Vec<(String, ImportError)>;

/// Reads every lineage, account and global deploy hook of certbot's configuration
/// directory `root`. A lineage whose files cannot be read is returned apart.
pub fn certbot(root: &Path) -> Result<(CertbotFiles, Unreadable), ImportError> {
    let (lineages, unreadable) = read_each(
        root,
        (
            "renewal",
            "pass certbot's configuration directory (default /etc/letsencrypt)",
        ),
        |path| name_without_suffix(path, ".conf"),
        |name, conf_path| lineage(root, name, conf_path),
    )?;
    let mut accounts = Vec::new();
    let accounts_dir = root.join("accounts");
    if accounts_dir.is_dir() {
        for dir in account_dirs(&accounts_dir, 0)? {
            accounts.push(AccountFiles {
                id: dir
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                private_key_json: read(&dir.join("private_key.json"))?,
                regr_json: read(&dir.join("regr.json"))?,
                dir,
            });
        }
    }
    let hooks = root.join("renewal-hooks");
    let executables = |kind: &str| -> Result<Vec<PathBuf>, ImportError> {
        let dir = hooks.join(kind);
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        Ok(entries(&dir)?
            .into_iter()
            .filter(|path| {
                fs::metadata(path)
                    .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
            })
            .collect())
    };
    let files = CertbotFiles {
        root: root.to_owned(),
        lineages,
        accounts,
        deploy_hook_scripts: executables("deploy")?,
        pre_post_hook_scripts: [executables("pre")?, executables("post")?].concat(),
    };
    Ok((files, unreadable))
}

/// One lineage: its renewal conf and the certificate and key it names.
fn lineage(root: &Path, name: &str, conf_path: PathBuf) -> Result<LineageFiles, ImportError> {
    let conf = certbot::parse_renewal_conf(&read_text(&conf_path)?).map_err(|error| {
        ImportError::Parse {
            path: conf_path.clone(),
            message: format!("{error}: fix the file or move it out of renewal/"),
        }
    })?;
    let live = root.join("live").join(name);
    let named = |key: &str, default: &str| {
        conf.top
            .get(key)
            .map_or_else(|| live.join(default), PathBuf::from)
    };
    Ok(LineageFiles {
        name: name.to_owned(),
        fullchain_pem: read_text(&named("fullchain", "fullchain.pem"))?,
        key_pem: SecretPem::new(read_text(&named("privkey", "privkey.pem"))?),
        conf_path,
        conf,
    })
}

/// Reads every account and certificate of lego's `.lego` directory `root`. A certificate
/// whose files cannot be read is returned apart.
pub fn lego(root: &Path) -> Result<(LegoFiles, Unreadable), ImportError> {
    let (certificates, unreadable) = read_each(
        root,
        (
            "certificates",
            "pass lego's --path directory (default ./.lego)",
        ),
        |path| name_without_suffix(path, ".crt").filter(|name| !name.ends_with(".issuer")),
        |name, crt_path| {
            Ok(LegoCertificateFiles {
                name: name.to_owned(),
                crt_pem: read_text(&crt_path)?,
                key_pem: SecretPem::new(read_text(&crt_path.with_extension("key"))?),
                crt_path,
            })
        },
    )?;
    let mut accounts = Vec::new();
    let accounts_dir = root.join("accounts");
    if accounts_dir.is_dir() {
        for server in entries(&accounts_dir)?.into_iter().filter(|p| p.is_dir()) {
            for email_dir in entries(&server)?.into_iter().filter(|p| p.is_dir()) {
                let email = file_name(&email_dir);
                let account_path = email_dir.join("account.json");
                if !account_path.is_file() {
                    continue;
                }
                let key_path = email_dir.join("keys").join(format!("{email}.key"));
                accounts.push(LegoAccountFiles {
                    server_dir: file_name(&server),
                    account_json: read(&account_path)?,
                    key_pem: SecretPem::new(read_text(&key_path)?),
                    email,
                    account_path,
                    key_path,
                });
            }
        }
    }
    let files = LegoFiles {
        root: root.to_owned(),
        accounts,
        certificates,
    };
    Ok((files, unreadable))
}

/// certbot's account directories: those holding `private_key.json`, at most five levels
/// below `dir` (`SERVER/directory/ID/` or `SERVER:PORT/dir/ID/`).
fn account_dirs(dir: &Path, depth: usize) -> Result<Vec<PathBuf>, ImportError> {
    if dir.join("private_key.json").is_file() {
        return Ok(vec![dir.to_owned()]);
    }
    if depth >= 5 {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in entries(dir)?.into_iter().filter(|path| path.is_dir()) {
        found.extend(account_dirs(&entry, depth + 1)?);
    }
    Ok(found)
}

/// The entries of `dir`, sorted.
fn entries(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let read_error = |source| ImportError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut paths = fs::read_dir(dir)
        .map_err(read_error)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    paths.sort();
    Ok(paths)
}

/// `root/name`, which must be a directory; otherwise the error says to `what_to_pass`.
/// Reads each file of the required directory `root/{dir.0}` (`dir.1` says what to pass
/// when it is missing) that `name_of` names, with `read`; a file that cannot be read is
/// set aside under its name and the others are still read.
fn read_each<T>(
    root: &Path,
    dir: (&str, &str),
    name_of: impl Fn(&Path) -> Option<&str>,
    mut read: impl FnMut(&str, PathBuf) -> Result<T, ImportError>,
) -> Result<(Vec<T>, Unreadable), ImportError> {
    let (dir, what_to_pass) = dir;
    let mut read_files = Vec::new();
    let mut unreadable = Vec::new();
    for path in entries(&required_dir(root, dir, what_to_pass)?)? {
        let Some(name) = name_of(&path).map(str::to_owned) else {
            continue;
        };
        match read(&name, path) {
            Ok(files) => read_files.push(files),
            Err(error) => unreadable.push((name, error)),
        }
    }
    Ok((read_files, unreadable))
}

fn required_dir(root: &Path, name: &str, what_to_pass: &str) -> Result<PathBuf, ImportError> {
    let dir = root.join(name);
    if !dir.is_dir() {
        return Err(ImportError::NotFound {
            path: root.to_owned(),
            problem: format!("has no {name}/ directory: {what_to_pass}"),
        });
    }
    Ok(dir)
}

/// The file name of `path` without `suffix`, for a UTF-8 name that ends in it.
fn name_without_suffix<'a>(path: &'a Path, suffix: &str) -> Option<&'a str> {
    path.file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.strip_suffix(suffix))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Certificates, keys and account files are a few kilobytes; anything near this is not one.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

fn read(path: &Path) -> Result<Vec<u8>, ImportError> {
    crate::disk::read_capped(path, MAX_FILE_BYTES).map_err(|error| ImportError::Read {
        path: path.to_owned(),
        source: match error {
            crate::disk::ReadCappedError::Io(source) => source,
            other => std::io::Error::other(other.to_string()),
        },
    })
}

fn read_text(path: &Path) -> Result<String, ImportError> {
    String::from_utf8(read(path)?).map_err(|_| ImportError::Parse {
        path: path.to_owned(),
        message: "is not text (UTF-8): expected a PEM or configuration file".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str, mode: u32) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_certbot_tree_yields_its_lineages_nested_accounts_and_executable_deploy_hooks() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path();
        write(
            &root.join("renewal/site.conf"),
            "[renewalparams]\naccount = abc\n",
            0o644,
        );
        write(&root.join("renewal/README"), "not a conf", 0o644);
        write(&root.join("live/site/fullchain.pem"), "CHAIN", 0o644);
        write(&root.join("live/site/privkey.pem"), "KEY", 0o600);
        let account = root.join("accounts/ca.test:14000/dir/abc");
        write(&account.join("private_key.json"), "{}", 0o400);
        write(&account.join("regr.json"), "{\"uri\":\"u\"}", 0o644);
        let hooks = root.join("renewal-hooks");
        write(&hooks.join("deploy/reload"), "#!/bin/sh\n", 0o755);
        write(&hooks.join("deploy/notes.txt"), "", 0o644);
        write(&hooks.join("pre/stop"), "#!/bin/sh\n", 0o755);

        write(&root.join("renewal/gone.conf"), "[renewalparams]\n", 0o644);
        let (files, unreadable) = certbot(root).unwrap();
        let [(name, error)] = &unreadable[..] else {
            panic!("one unreadable lineage: {unreadable:?}");
        };
        assert_eq!(name, "gone");
        assert!(
            error.to_string().starts_with(&format!(
                "cannot read {}",
                root.join("live/gone/fullchain.pem").display()
            )),
            "{error}"
        );
        let [lineage] = &files.lineages[..] else {
            panic!("one lineage: {:?}", files.lineages);
        };
        assert_eq!(lineage.name, "site");
        assert_eq!(lineage.fullchain_pem, "CHAIN");
        assert_eq!(lineage.key_pem.expose(), "KEY");
        let [found] = &files.accounts[..] else {
            panic!("one account: {:?}", files.accounts);
        };
        assert_eq!((found.id.as_str(), &found.dir), ("abc", &account));
        assert_eq!(
            files.deploy_hook_scripts,
            [root.join("renewal-hooks/deploy/reload")]
        );
        assert_eq!(
            files.pre_post_hook_scripts,
            [root.join("renewal-hooks/pre/stop")]
        );
    }

    #[test]
    fn a_directory_that_is_not_certbots_or_legos_says_which_to_pass() {
        let temp = tempfile::tempdir().unwrap();
        let certbot_error = certbot(temp.path()).unwrap_err().to_string();
        assert!(
            certbot_error.ends_with("has no renewal/ directory: pass certbot's configuration directory (default /etc/letsencrypt)"),
            "{certbot_error}"
        );
        let lego_error = lego(temp.path()).unwrap_err().to_string();
        assert!(
            lego_error.contains("pass lego's --path directory"),
            "{lego_error}"
        );
    }
}
