//! Starting, signalling and stopping child processes, so that none outlives its parent.
//!
//! - [`spawn_tied`] starts a child that the kernel kills when this process dies, even by
//!   SIGKILL (`PR_SET_PDEATHSIG`). The kernel ties the child to the *thread* that forked it,
//!   so every tied child is forked by one thread that lives as long as the process.
//! - [`register_cleanup`] records a child (and a directory) that an emergency exit must stop
//!   and remove; [`emergency_cleanup`] does so, e.g. on a second shutdown signal, where there
//!   is no time for a graceful stop but orphans are not acceptable.

use std::io;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use rustix::process::Signal;
use rustix::process::{Pid, kill_process};

/// Sends `signal` to `pid`; a pid that is not positive or a process that is gone is ignored.
pub fn send_signal(pid: i32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = kill_process(pid, signal);
    }
}

/// Whether `pid` is a live (not zombie) process.
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Sends SIGTERM, waits up to `grace`, then kills and reaps.
pub fn terminate(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        send_signal(pid, Signal::TERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Starts `command` as a child that receives SIGKILL when this process dies.
pub fn spawn_tied(command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        let started = std::thread::Builder::new()
            .name("natsproc-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    tie_to_parent(&mut command);
                    let _ = reply.send(command.spawn());
                }
            });
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the spawner thread; children are not tied");
        }
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    let sent = spawner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((command, reply_tx));
    match sent {
        Ok(()) => reply_rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("the spawner thread stopped"))),
        // No spawner thread: start the child untied rather than not at all.
        Err(mpsc::SendError((mut command, _))) => command.spawn(),
    }
}

/// Asks the kernel to SIGKILL the child when the forking thread (the spawner) dies, and fails
/// the exec if the parent is already gone.
#[allow(unsafe_code)]
fn tie_to_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child before exec. It only makes two system calls
    // (prctl and getppid) through rustix, which allocate nothing and take no locks, so it is
    // async-signal-safe as `pre_exec` requires.
    unsafe {
        command.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            if rustix::process::getppid() != Some(parent) {
                return Err(io::Error::other("parent exited before the child started"));
            }
            Ok(())
        });
    }
}

/// What an emergency exit must stop and remove.
#[derive(Debug, Clone)]
struct Cleanup {
    pid: u32,
    dir: Option<PathBuf>,
}

static CLEANUPS: Mutex<Vec<Cleanup>> = Mutex::new(Vec::new());

/// Records a child (and its directory) for [`emergency_cleanup`].
pub fn register_cleanup(pid: u32, dir: Option<PathBuf>) {
    CLEANUPS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Cleanup { pid, dir });
}

/// Forgets a child that was stopped the ordinary way.
pub fn unregister_cleanup(pid: u32) {
    CLEANUPS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|c| c.pid != pid);
}

/// Kills every registered child at once and removes its directory. Returns how many children
/// were signalled.
pub fn emergency_cleanup() -> usize {
    let cleanups = std::mem::take(&mut *CLEANUPS.lock().unwrap_or_else(|p| p.into_inner()));
    for c in &cleanups {
        if let Ok(pid) = i32::try_from(c.pid) {
            // A stopped (SIGSTOP) child is killed as well; SIGCONT lets it be reaped.
            send_signal(pid, Signal::KILL);
            send_signal(pid, Signal::CONT);
        }
    }
    for c in &cleanups {
        let deadline = Instant::now() + Duration::from_secs(1);
        while is_alive(c.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(dir) = &c.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    cleanups.len()
}
