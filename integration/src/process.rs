//! Running workspace binaries as real processes for a test.

use crate::{free_addr, workspace_bin};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A process with an admin port; killed on drop.
pub struct Service {
    child: Option<Child>,
    /// Its admin address.
    pub admin: SocketAddr,
    binary: &'static str,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Lines of stdout, when captured ([`Service::capture_stdout`]).
    stdout: Option<std::sync::Arc<std::sync::Mutex<Vec<String>>>>,
}

impl Service {
    /// Starts `observatory-consumer <sink>` with `env`, on a free admin port.
    /// The PostgreSQL sink reads traces only unless `env` sets `SIGNALS`
    /// (the metrics and logs topics are shared by every test otherwise).
    pub fn consumer(sink: &str, env: &[(&str, String)]) -> Service {
        let admin = free_addr();
        let mut env: Vec<(String, String)> = [("SIGNALS", "traces".to_owned())]
            .iter()
            .chain(env)
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        env.push(("CONSUMER_ADMIN_ADDR".into(), admin.to_string()));
        let mut service = Service {
            child: None,
            admin,
            binary: "observatory-consumer",
            args: vec![sink.to_owned()],
            env,
            stdout: None,
        };
        service.start();
        service
    }

    /// Starts `observatory-api` with `env` on a free port (its address is
    /// `admin`: the API serves health and the API on one port).
    pub fn api(env: &[(&str, String)]) -> Service {
        let addr = free_addr();
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        env.push(("API_ADDR".into(), addr.to_string()));
        let mut service = Service {
            child: None,
            admin: addr,
            binary: "observatory-api",
            args: vec![],
            env,
            stdout: None,
        };
        service.start();
        service
    }

    /// [`Service::api`], keeping the lines of its stdout ([`Service::stdout_lines`]).
    pub fn api_capturing(env: &[(&str, String)]) -> Service {
        let mut service = Service::api(env);
        service.kill();
        service.stdout = Some(Default::default());
        service.start();
        service
    }

    /// Starts (or starts again, with the same settings) the process.
    pub fn start(&mut self) {
        let mut command = Command::new(workspace_bin(self.binary));
        command
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("CONSUMER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        if self.stdout.is_some() {
            command.stdout(Stdio::piped());
        }
        let mut child = command
            .spawn()
            .expect("start the binary (cargo build --bins)");
        if let (Some(lines), Some(out)) = (self.stdout.clone(), child.stdout.take()) {
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().expect("no poisoned lock").push(line);
                }
            });
        }
        self.child = Some(child);
    }

    /// The lines of stdout so far (empty unless captured).
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout
            .as_ref()
            .map(|l| l.lock().expect("no poisoned lock").clone())
            .unwrap_or_default()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// CPU seconds (user and system) the process has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let pid = self.pid().expect("the process runs");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
        // Fields after the parenthesized name: state is field 3, utime 14, stime 15.
        let after = &stat[stat.rfind(')').expect("a stat line") + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        // USER_HZ is 100 on Linux.
        ticks / 100.0
    }

    /// SIGKILLs the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERMs the process and waits for its exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().ok()
    }

    /// GETs an admin path.
    pub async fn admin_get(&self, path: &str) -> Option<(u16, String)> {
        crate::admin_get(self.admin, path).await
    }

    /// Waits for `/readyz`.
    pub async fn wait_ready(&self, timeout: Duration) {
        crate::wait_ready(self.admin, timeout).await
    }

    /// Sum of the metric lines starting with `prefix`.
    pub async fn metric(&self, prefix: &str) -> f64 {
        crate::metric(self.admin, prefix).await
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}
