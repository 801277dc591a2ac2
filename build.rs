//! What `sluice version` says besides the crate's version: the git commit
//! it was built from and when. A build from a tarball (no git, or no
//! repository) says `unknown` for the commit; SOURCE_DATE_EPOCH, when set,
//! is the build date, so a reproducible build stays reproducible.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    // NB: rebuilt when HEAD moves (a checkout, a commit on the branch),
    // not on every change of a file, which would rebuild the crate for
    // each edit of a test. Only paths that exist are named (cargo takes a
    // missing one as changed, every time); a branch whose ref is packed
    // has no file yet, so then its directory is watched, where a commit
    // writes it.
    let root = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let existing = |name: &str| {
        git(&["rev-parse", "--git-path", name]).filter(|path| root.join(path).exists())
    };
    let mut watched: Vec<String> = ["HEAD", "packed-refs"]
        .into_iter()
        .filter_map(existing)
        .collect();
    if let Some(branch) = git(&["symbolic-ref", "HEAD"]) {
        let directory = branch.rsplit_once('/').map_or("", |(dir, _)| dir);
        watched.extend(existing(&branch).or_else(|| existing(directory)));
    }
    for path in watched {
        println!("cargo:rerun-if-changed={path}");
    }
    let short = commit.get(..12).unwrap_or(&commit);
    println!("cargo:rustc-env=SLUICE_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=SLUICE_GIT_COMMIT_SHORT={short}");
    println!("cargo:rustc-env=SLUICE_BUILD_DATE={}", build_date());
}

/// The trimmed output of a git command run in the crate's directory, when
/// it succeeds and that directory is the root of a work tree: a tarball
/// unpacked inside some other repository is not that repository's commit.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let run = |args: &[&str]| {
        let output = Command::new("git")
            .args(args)
            .current_dir(&dir)
            .output()
            .ok()?;
        let text = String::from_utf8(output.stdout).ok()?;
        let text = text.trim();
        (output.status.success() && !text.is_empty()).then(|| text.to_owned())
    };
    let root = run(&["rev-parse", "--show-toplevel"])?;
    let same = |p: &std::path::Path| p.canonicalize().ok();
    if same(std::path::Path::new(&root))? != same(&dir)? {
        return None;
    }
    run(args)
}

/// RFC 3339, UTC, to the second.
fn build_date() -> String {
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
