//! `git daemon` serving one repository on a free loopback port, for the
//! tests and benchmarks that fetch over the network (included by path into
//! each test binary and benchmark that needs it).

use std::{
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Serves a repository's parent directory; killed, with every child it
/// forked, on drop.
pub struct GitDaemon {
    child: Child,
    port: u16,
    name: String,
}

impl GitDaemon {
    pub fn serve(repo: &Path) -> GitDaemon {
        let base = repo.parent().unwrap();
        let name = repo.file_name().unwrap().to_string_lossy().into_owned();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // NB: its own process group, so the children it forks per
            // connection go with it.
            .process_group(0)
            .spawn()
            .expect("git daemon starts");
        let daemon = GitDaemon { child, port, name };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    /// `git://127.0.0.1:PORT/NAME`.
    pub fn url(&self) -> String {
        format!("git://127.0.0.1:{}/{}", self.port, self.name)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
