//! The local stack (`cargo xtask dev|up`, the end-to-end tests) keeps its secrets off command
//! lines, which every user of the machine can read, and in files only its owner can read.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use spillway_support::stack::{dev_vars, prebuilt_config, write_private};
use spillway_support::{repo_root, run_dir, Stack, StackConfig};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every process's command line, as `ps` shows them to anyone.
fn command_lines() -> Vec<(u32, String)> {
    fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse().ok()?;
            let raw = fs::read(e.path().join("cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&raw).replace('\0', " ")))
        })
        .collect()
}

#[test]
fn secrets_stay_off_command_lines() {
    let build = repo_root().join("edge/build");
    if !build.join("index_bg.wasm").is_file() || prebuilt_config(&repo_root()).is_err() {
        assert!(
            std::env::var_os("SPILLWAY_REQUIRE_WASM").is_none(),
            "the worker is not built but SPILLWAY_REQUIRE_WASM is set"
        );
        eprintln!("skipped: the worker is not built (run `cargo xtask test`)");
        return;
    }
    let cfg = StackConfig::ephemeral("secrets").expect("ports");
    let stack = Stack::start(cfg, &mut |line| eprintln!("[secrets] {line}")).expect("starts");
    let secrets = [
        stack.env.ingest_key.as_str(),
        stack.env.aws_secret_access_key.as_str(),
    ];
    let lines = command_lines();
    // Positive control: the edge's processes are among those looked at.
    let port = format!("127.0.0.1:{}", stack.config.edge_port);
    assert!(
        lines
            .iter()
            .any(|(_, l)| l.contains("workerd") && l.contains(&port)),
        "workerd serving {port} not found"
    );
    for (pid, line) in &lines {
        for secret in secrets {
            assert!(
                !line.contains(secret),
                "pid {pid} has a secret on its command line: {line}"
            );
        }
    }
    // The edge got them from its vars file, and still accepts the key.
    let vars = stack.config.dir.join(".dev.vars");
    assert_eq!(
        mode(&vars),
        0o600,
        "{} is readable by others",
        vars.display()
    );
    let text = fs::read_to_string(&vars).expect("vars");
    assert!(secrets.iter().all(|s| text.contains(s)), "{text}");
    assert_eq!(mode(&stack.config.dir.join("dev.env")), 0o600);
    let (status, body) = post_event(stack.config.edge_port, &stack.env.ingest_key);
    assert_eq!(status, 202, "{body}");
    let dir = stack.config.dir.clone();
    drop(stack);
    let _ = fs::remove_dir_all(dir);
}

/// One event with the key, over a plain HTTP/1.1 connection.
fn post_event(port: u16, key: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let body = r#"{"type":"secrets_test"}"#;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, raw)
}

#[test]
fn private_files_are_private_from_the_start_and_replace_open_ones() {
    let dir = run_dir().join(format!("private-file-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(".dev.vars");
    fs::write(&path, "OLD=1\n").expect("old file");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    write_private(&path, "NEW=2\n").expect("write");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(fs::read_to_string(&path).expect("read"), "NEW=2\n");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn dev_vars_quote_values_and_refuse_what_cannot_be_quoted() {
    let text = dev_vars(&[
        ("INGEST_KEYS", "dev:ab#cd ef".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "x/y+z=".to_owned()),
    ])
    .expect("quotable");
    assert_eq!(
        text,
        "INGEST_KEYS='dev:ab#cd ef'\nAWS_SECRET_ACCESS_KEY='x/y+z='\n"
    );
    assert!(dev_vars(&[("K", "it's".to_owned())]).is_err());
    assert!(dev_vars(&[("K", "a\nB=c".to_owned())]).is_err());
}
