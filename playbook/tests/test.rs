//! A small fluent builder that runs the real `playbook` binary in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Output of a finished test run.
pub(crate) struct Output {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) dir: PathBuf,
    /// Keeps the directory alive until the output is dropped.
    _tempdir: tempfile::TempDir,
}

impl Output {
    /// Reads a file from the test directory.
    pub(crate) fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name))
            .unwrap_or_else(|e| panic!("cannot read {name}: {e}"))
    }

    pub(crate) fn exists(&self, name: &str) -> bool {
        self.dir.join(name).exists()
    }
}

pub(crate) struct Test {
    dir: tempfile::TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdout: Vec<String>,
    stderr: Vec<String>,
    not_stdout: Vec<String>,
    not_stderr: Vec<String>,
    status: i32,
}

impl Test {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            args: Vec::new(),
            env: Vec::new(),
            stdout: Vec::new(),
            stderr: Vec::new(),
            not_stdout: Vec::new(),
            not_stderr: Vec::new(),
            status: 0,
        }
    }

    /// The temporary directory the binary runs in.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file; `{dir}` in the content becomes the test directory.
    pub(crate) fn file(self, name: &str, content: &str) -> Self {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        let content = content.replace("{dir}", &self.dir.path().to_string_lossy());
        std::fs::write(&path, content).expect("write file");
        self
    }

    /// Writes an executable script.
    pub(crate) fn script(self, name: &str, content: &str) -> Self {
        let this = self.file(name, content);
        let path = this.dir.path().join(name);
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        this
    }

    /// Writes `pb.yaml` with standard metadata followed by `body`.
    pub(crate) fn playbook(self, body: &str) -> Self {
        let text = format!(
            "name: test\nversion: 1.0.0\nauthor: tester\ndescription: a test playbook\nrun_as: choria=tester\n{body}"
        );
        self.file("pb.yaml", &text)
    }

    pub(crate) fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(ToString::to_string));
        self
    }

    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub(crate) fn stdout_has(mut self, text: &str) -> Self {
        self.stdout.push(text.to_string());
        self
    }

    pub(crate) fn stderr_has(mut self, text: &str) -> Self {
        self.stderr.push(text.to_string());
        self
    }

    pub(crate) fn stdout_lacks(mut self, text: &str) -> Self {
        self.not_stdout.push(text.to_string());
        self
    }

    pub(crate) fn stderr_lacks(mut self, text: &str) -> Self {
        self.not_stderr.push(text.to_string());
        self
    }

    pub(crate) fn status(mut self, code: i32) -> Self {
        self.status = code;
        self
    }

    /// Runs the binary and checks every expectation.
    pub(crate) fn run(self) -> Output {
        let output = Command::new(env!("CARGO_BIN_EXE_playbook"))
            .args(&self.args)
            .current_dir(self.dir.path())
            .env_remove("PLAYBOOK_TRACE")
            .env_remove("PLAYBOOK_SLACK_API")
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run playbook");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let context = format!(
            "args: {:?}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}",
            self.args
        );
        assert_eq!(
            output.status.code(),
            Some(self.status),
            "exit status\n{context}"
        );
        for s in &self.stdout {
            assert!(
                stdout.contains(s.as_str()),
                "stdout should contain {s:?}\n{context}"
            );
        }
        for s in &self.stderr {
            assert!(
                stderr.contains(s.as_str()),
                "stderr should contain {s:?}\n{context}"
            );
        }
        for s in &self.not_stdout {
            assert!(
                !stdout.contains(s.as_str()),
                "stdout should not contain {s:?}\n{context}"
            );
        }
        for s in &self.not_stderr {
            assert!(
                !stderr.contains(s.as_str()),
                "stderr should not contain {s:?}\n{context}"
            );
        }
        Output {
            stdout,
            stderr,
            dir: self.dir.path().to_path_buf(),
            _tempdir: self.dir,
        }
    }
}
