//! Tests of the crate root's helpers.

use super::*;

#[test]
fn free_ports_are_bindable() {
    let p = free_port().expect("port");
    assert!(TcpListener::bind(("127.0.0.1", p)).is_ok());
}

#[test]
fn sweep_stops_an_orphaned_group() {
    let dir = run_dir().join(unique("sweep-test"));
    fs::create_dir_all(&dir).expect("dir");
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("sleep")
        .arg("30")
        .process_group(0)
        .spawn()
        .expect("sleep");
    fs::write(dir.join("x.service"), format!("group {}", child.id())).expect("record");
    assert_eq!(sweep(&dir, Duration::from_secs(2)), 1);
    let status = child.wait().expect("wait");
    assert!(!status.success(), "killed, not finished");
    assert_eq!(fs::read_dir(&dir).expect("dir").count(), 0);
    let _ = fs::remove_dir_all(&dir);
}
