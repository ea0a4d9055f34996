//! Which program a container runs: docker's rule for Entrypoint and Cmd.

use super::options::{ImageDefaults, RunOptions};

/// `--entrypoint` replaces the image's Entrypoint and drops its Cmd; the
/// arguments after the image name replace Cmd. The result is Entrypoint
/// followed by Cmd, or `None` if that is empty (docker: "no command
/// specified").
pub fn command_line(image: &ImageDefaults, opts: &RunOptions) -> Option<Vec<String>> {
    let (entrypoint, image_cmd) = match &opts.entrypoint {
        Some(e) if e.is_empty() => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.clone()], Vec::new()),
        None => (image.entrypoint.clone(), image.cmd.clone()),
    };
    let cmd = if opts.args.is_empty() {
        image_cmd
    } else {
        opts.args.clone()
    };
    let line: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    (!line.is_empty()).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn docker_rules() {
        let image = ImageDefaults {
            entrypoint: s(&["/ep"]),
            cmd: s(&["a"]),
            ..Default::default()
        };
        let run = |entrypoint: Option<&str>, args: &[&str]| {
            let opts = RunOptions {
                entrypoint: entrypoint.map(Into::into),
                args: s(args),
                ..Default::default()
            };
            command_line(&image, &opts)
        };
        assert_eq!(run(None, &[]), Some(s(&["/ep", "a"])));
        assert_eq!(run(None, &["b"]), Some(s(&["/ep", "b"])));
        assert_eq!(run(Some("/x"), &[]), Some(s(&["/x"])));
        assert_eq!(run(Some("/x"), &["y"]), Some(s(&["/x", "y"])));
        assert_eq!(run(Some(""), &["sh"]), Some(s(&["sh"])));
        assert_eq!(run(Some(""), &[]), None);
    }
}
