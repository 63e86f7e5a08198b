//! Tests of the atomic writer, private directories and capped reads on a real file system.

use super::*;

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A fresh temporary directory and the path `name` in it (not created).
fn file_in_tempdir(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn write_atomic_replaces_content_and_leaves_no_temp_file() {
    let (dir, path) = file_in_tempdir("cert.pem");
    write_atomic(&path, b"old", MODE_PUBLIC).unwrap();
    write_atomic(&path, b"new", MODE_PUBLIC).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"new");
    assert_eq!(entries(dir.path()), ["cert.pem"]);
}

#[test]
fn key_files_are_created_0600_even_when_replacing_a_wider_file() {
    let (_dir, path) = file_in_tempdir("key.pem");
    write_atomic(&path, b"public", MODE_PUBLIC).unwrap();
    write_atomic(&path, b"secret", MODE_SECRET).unwrap();
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn a_failure_before_rename_leaves_the_old_file_intact_and_removes_the_temp() {
    let (dir, path) = file_in_tempdir("fullchain.pem");
    write_atomic(&path, b"old", MODE_PUBLIC).unwrap();
    let err = write_atomic_with(&path, b"new", MODE_PUBLIC, |_| {
        Err(std::io::Error::other("disk full"))
    })
    .unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"old");
    assert_eq!(entries(dir.path()), ["fullchain.pem"]);
}

#[test]
fn a_failed_rename_onto_a_directory_leaves_it_and_no_temp_file() {
    let (dir, path) = file_in_tempdir("busy");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("inside"), b"x").unwrap();
    assert!(write_atomic(&path, b"new", MODE_PUBLIC).is_err());
    assert_eq!(fs::read(path.join("inside")).unwrap(), b"x");
    assert_eq!(entries(dir.path()), ["busy"]);
}

#[test]
fn the_temporary_file_is_never_opened_through_a_planted_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    let planted = dir.path().join(".account.json.tmp");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let error = write_durable(&planted, b"secret", MODE_SECRET).unwrap_err();
    assert_eq!(error.action, "create", "{error}");
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    // A dangling symlink is refused too: O_NOFOLLOW and O_EXCL, not just "exists".
    let dangling = dir.path().join(".dangling.tmp");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
    assert!(write_durable(&dangling, b"secret", MODE_SECRET).is_err());
    assert!(!dir.path().join("nowhere").exists());
}

#[test]
fn replace_symlink_atomic_switches_an_existing_link() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("v0001")).unwrap();
    fs::create_dir(dir.path().join("v0002")).unwrap();
    let link = dir.path().join("current");
    replace_symlink_atomic(&link, Path::new("v0001")).unwrap();
    replace_symlink_atomic(&link, Path::new("v0002")).unwrap();
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("v0002"));
    assert_eq!(entries(dir.path()), ["current", "v0001", "v0002"]);
}

#[test]
fn a_private_dir_is_created_0700_and_a_wider_existing_one_is_narrowed() {
    let temp = tempfile::tempdir().unwrap();
    let fresh = temp.path().join("state/acme");
    ensure_private_dir(&fresh).unwrap();
    assert_eq!(mode(&fresh), 0o700);
    let wide = temp.path().join("wide");
    fs::create_dir(&wide).unwrap();
    fs::set_permissions(&wide, fs::Permissions::from_mode(0o755)).unwrap();
    ensure_private_dir(&wide).unwrap();
    assert_eq!(mode(&wide), 0o700);
}

#[test]
fn a_symlink_in_place_of_a_private_dir_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let elsewhere = temp.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o755)).unwrap();
    let link = temp.path().join("acme");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let error = ensure_private_dir(&link).unwrap_err();
    assert!(error.to_string().contains("symlink"), "{error}");
    assert_eq!(mode(&elsewhere), 0o755, "the link's target is left alone");
}

#[test]
fn read_capped_reads_up_to_the_limit_and_refuses_more() {
    let (_dir, path) = file_in_tempdir("f");
    fs::write(&path, [b'x'; 10]).unwrap();
    assert_eq!(read_capped(&path, 10).unwrap().len(), 10);
    let error = read_capped(&path, 9).unwrap_err();
    assert!(
        matches!(error, ReadCappedError::TooLarge { limit: 9 }),
        "{error}"
    );
}

#[test]
fn read_capped_stops_on_an_endless_file() {
    // /dev/zero never ends: only the cap ends the read.
    let error = read_capped(Path::new("/dev/zero"), 4096).unwrap_err();
    assert!(matches!(error, ReadCappedError::TooLarge { .. }), "{error}");
}

#[test]
fn temporaries_of_dead_writers_are_removed_and_live_ones_kept() {
    let temp = tempfile::tempdir().unwrap();
    // PIDs never exceed 2^22 on Linux: this writer is certainly gone.
    let dead = temp.path().join(".account-1.json.tmp.999999999.3");
    let live = temp
        .path()
        .join(format!(".account-1.json.tmp.{}.4", std::process::id()));
    let other = temp.path().join(".hidden");
    for path in [&dead, &live, &other] {
        std::fs::write(path, "{").unwrap();
    }
    assert_eq!(
        super::remove_stale_temporaries(temp.path()).unwrap(),
        std::slice::from_ref(&dead)
    );
    assert!(!dead.exists());
    assert!(live.exists() && other.exists());
}
