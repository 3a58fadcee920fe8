//! The `wrangler dev` command line that serves every local edge: the stack of `cargo xtask
//! dev|up|bench` and the edge's own integration tests.
//!
//! **Without the DevTools inspector** unless a port is asked for. `wrangler dev` (4.86) always
//! starts one, and its inspector proxy subscribes to the runtime's `Network` and `Runtime`
//! DevTools events: every subrequest and every `console.log` of every request becomes a
//! DevTools message that the proxy forwards to wrangler's node process as an HTTP request (a
//! debug log) and keeps in memory until a DevTools client attaches. Under a burst that is most
//! of the local rig's CPU: a burst of 3,000 requests of 10 events cost node 7.7 s and the proxy's
//! `workerd` 6.1 s of CPU with it, 1.7 s and 2.5 s without (2-core machine, `cargo xtask up --sqs
//! localstack`, CPU times from /proc before and after); a starved `workerd` then resets
//! connections between wrangler's proxy and the worker, which clients see as `503 Your worker
//! restarted mid-request`. Nothing of this exists in production. The CLI has no switch for it; wrangler
//! leaves it off inside a VS Code JavaScript debug terminal, which it recognises by
//! `VSCODE_INSPECTOR_OPTIONS`, so that is what is set. `--inspector-port` turns it back on.

use std::path::Path;
use std::process::Command;

/// What wrangler reads to leave its inspector off (see the module documentation).
pub const INSPECTOR_OFF_VAR: &str = "VSCODE_INSPECTOR_OPTIONS";

/// `wrangler dev` from the repository's `node_modules`, serving `config` on `127.0.0.1:port`,
/// local state in `persist`, metrics off, no interactive session; the DevTools inspector on
/// `inspector_port` if given, else off.
pub fn wrangler_dev(
    root: &Path,
    config: &Path,
    port: u16,
    persist: &Path,
    inspector_port: Option<u16>,
) -> Command {
    let mut cmd = Command::new(root.join("node_modules/.bin/wrangler"));
    cmd.env("WRANGLER_SEND_METRICS", "false")
        .env("CI", "true")
        // Miniflare's fixed `request.cf` (Austin, DFW), not the machine's own location fetched
        // from workers.cloudflare.com: the same context on every machine, online or not, and
        // no network call at start-up.
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .arg("dev")
        .arg("--config")
        .arg(config)
        .args(["--ip", "127.0.0.1"])
        .args(["--port", &port.to_string()])
        .arg("--persist-to")
        .arg(persist)
        .arg("--show-interactive-dev-session=false");
    match inspector_port {
        Some(p) => {
            cmd.env_remove(INSPECTOR_OFF_VAR)
                .args(["--inspector-port", &p.to_string()]);
        }
        None => {
            // Any value does: wrangler only asks whether it is set, and Miniflare reads it
            // only when an inspector socket exists, which it then does not.
            cmd.env(INSPECTOR_OFF_VAR, "spillway: inspector off");
        }
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn env(cmd: &Command, name: &str) -> Option<Option<String>> {
        cmd.get_envs()
            .find(|(k, _)| *k == OsStr::new(name))
            .map(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
    }

    #[test]
    fn the_inspector_is_off_unless_a_port_is_given() {
        let root = Path::new("/repo");
        let cmd = wrangler_dev(
            root,
            Path::new("/s/wrangler.toml"),
            8787,
            Path::new("/s/st"),
            None,
        );
        let a = args(&cmd);
        assert!(!a.iter().any(|x| x == "--inspector-port"), "{a:?}");
        assert!(matches!(env(&cmd, INSPECTOR_OFF_VAR), Some(Some(v)) if !v.is_empty()));
        assert_eq!(cmd.get_program(), root.join("node_modules/.bin/wrangler"));
        assert_eq!(
            a[..8],
            [
                "dev",
                "--config",
                "/s/wrangler.toml",
                "--ip",
                "127.0.0.1",
                "--port",
                "8787",
                "--persist-to"
            ]
        );
    }

    #[test]
    fn an_inspector_port_turns_it_on() {
        let cmd = wrangler_dev(
            Path::new("/repo"),
            Path::new("/s/wrangler.toml"),
            8787,
            Path::new("/s/st"),
            Some(9229),
        );
        let a = args(&cmd);
        let at = a
            .iter()
            .position(|x| x == "--inspector-port")
            .expect("flag");
        assert_eq!(a[at + 1], "9229");
        // Removed, so a value inherited from a VS Code terminal does not turn it off again.
        assert_eq!(env(&cmd, INSPECTOR_OFF_VAR), Some(None));
    }
}
