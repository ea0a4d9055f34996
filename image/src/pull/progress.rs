//! Per-layer progress: bars on a terminal, one line per event otherwise,
//! nothing with `-q`. All on stderr, so stdout stays for results.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProgressMode {
    #[default]
    Auto,
    Bars,
    Lines,
    Quiet,
}

#[derive(Clone)]
pub struct Progress {
    mode: ProgressMode,
    multi: Option<MultiProgress>,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Progress {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bars,
            ProgressMode::Auto => ProgressMode::Lines,
            m => m,
        };
        let multi = (mode == ProgressMode::Bars)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { mode, multi }
    }

    pub fn line(&self, msg: &str) {
        match (&self.multi, self.mode) {
            (Some(m), _) => {
                let _ = m.println(msg);
            }
            (None, ProgressMode::Lines) => eprintln!("{msg}"),
            _ => {}
        }
    }

    pub fn blob(&self, label: &str, size: u64) -> BlobProgress {
        let bar = self.multi.as_ref().map(|m| {
            let b = m.add(ProgressBar::new(size));
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix} {bar:30} {bytes:>10}/{total_bytes:<10} {msg}",
            ) {
                b.set_style(style);
            }
            b.set_prefix(label.to_string());
            b
        });
        BlobProgress {
            bar,
            lines: self.mode == ProgressMode::Lines,
            label: label.to_string(),
        }
    }
}

pub struct BlobProgress {
    bar: Option<ProgressBar>,
    lines: bool,
    label: String,
}

impl BlobProgress {
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
    pub fn set(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_position(n);
        }
    }
    /// `what`: "downloading", "done", "already present", "unpacked", …
    pub fn status(&self, what: &str) {
        if let Some(b) = &self.bar {
            b.set_message(what.to_string());
        } else if self.lines {
            eprintln!("{} {what}", self.label);
        }
    }
    pub fn finish(&self, what: &str) {
        if let Some(b) = &self.bar {
            b.finish_with_message(what.to_string());
        } else if self.lines {
            eprintln!("{} {what}", self.label);
        }
    }
}
