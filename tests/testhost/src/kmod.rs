//! Kernel module dependency resolution from a kernel's `modules.dep` (made by `depmod`).
//!
//! Only what the test host needs: which `.ko` files to put in the initramfs and in which
//! order to `insmod` them (every module after all of its dependencies).

use std::collections::{HashMap, HashSet};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KmodError {
    #[error("modules.dep line {line}: {reason}")]
    Malformed { line: usize, reason: &'static str },
    #[error("kernel module {0:?} is neither in modules.dep nor built in")]
    Unknown(String),
    #[error("kernel module {0}: only uncompressed .ko modules are supported")]
    Compressed(String),
}

/// `modules.dep` and `modules.builtin`, indexed by module name.
#[derive(Debug, Default)]
pub struct ModuleIndex {
    /// name → (path relative to the modules dir, direct and indirect deps as listed)
    modules: HashMap<String, (String, Vec<String>)>,
    /// path → name, for following dependency paths
    by_path: HashMap<String, String>,
    builtin: HashSet<String>,
}

/// The module name of a path: `kernel/arch/x86/kvm/kvm-amd.ko` → `kvm_amd`.
pub fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

impl ModuleIndex {
    /// Parses `modules.dep` (`path: dep dep ...` per line) and `modules.builtin` (a path per
    /// line).
    pub fn parse(modules_dep: &str, modules_builtin: &str) -> Result<Self, KmodError> {
        let mut index = Self::default();
        for (i, line) in modules_dep.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (path, deps) = line.split_once(':').ok_or(KmodError::Malformed {
                line: i + 1,
                reason: "no ':'",
            })?;
            let path = path.trim();
            if path.is_empty() {
                return Err(KmodError::Malformed {
                    line: i + 1,
                    reason: "empty module path",
                });
            }
            let deps = deps.split_whitespace().map(str::to_owned).collect();
            let name = module_name(path);
            index.by_path.insert(path.to_owned(), name.clone());
            index.modules.insert(name, (path.to_owned(), deps));
        }
        index.builtin = modules_builtin
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(module_name)
            .collect();
        Ok(index)
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&module_name(name))
    }

    /// The module files (relative paths) to load for `wanted`, in load order: dependencies
    /// first, each file once, built-in modules skipped. The order of `wanted` is kept where
    /// dependencies allow, so callers can load what they need first.
    pub fn resolve<S: AsRef<str>>(&self, wanted: &[S]) -> Result<Vec<String>, KmodError> {
        let mut order = Vec::new();
        let mut done = HashSet::new();
        for name in wanted {
            let name = module_name(name.as_ref());
            if self.builtin.contains(&name) && !self.modules.contains_key(&name) {
                continue;
            }
            self.visit(&name, &mut done, &mut HashSet::new(), &mut order)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        done: &mut HashSet<String>,
        on_stack: &mut HashSet<String>,
        order: &mut Vec<String>,
    ) -> Result<(), KmodError> {
        if done.contains(name) || !on_stack.insert(name.to_owned()) {
            // Loaded already, or a dependency cycle (depmod refuses those; don't loop).
            return Ok(());
        }
        let (path, deps) = self
            .modules
            .get(name)
            .ok_or_else(|| KmodError::Unknown(name.to_owned()))?;
        if !path.ends_with(".ko") {
            return Err(KmodError::Compressed(path.clone()));
        }
        // modules.dep lists dependencies so that loading them last-to-first works; visiting
        // them in reverse keeps that order, and the recursion makes it right regardless.
        for dep in deps.iter().rev() {
            let dep_name = self
                .by_path
                .get(dep)
                .cloned()
                .unwrap_or_else(|| module_name(dep));
            self.visit(&dep_name, done, on_stack, order)?;
        }
        on_stack.remove(name);
        done.insert(name.to_owned());
        order.push(path.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/arch/x86/kvm/kvm-amd.ko: kernel/drivers/crypto/ccp/ccp.ko kernel/arch/x86/kvm/kvm.ko kernel/virt/lib/irqbypass.ko
kernel/arch/x86/kvm/kvm.ko: kernel/virt/lib/irqbypass.ko
kernel/virt/lib/irqbypass.ko:
kernel/drivers/crypto/ccp/ccp.ko:
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/netfs/netfs.ko:
kernel/net/9p/9pnet.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/xz/thing.ko.xz:
";

    fn names(paths: &[String]) -> Vec<String> {
        paths.iter().map(|p| module_name(p)).collect()
    }

    fn assert_deps_first(index: &ModuleIndex, order: &[String]) {
        for (i, path) in order.iter().enumerate() {
            let (_, deps) = &index.modules[&module_name(path)];
            for dep in deps {
                let pos = order.iter().position(|p| p == dep).expect("dep loaded");
                assert!(pos < i, "{dep} must load before {path}");
            }
        }
    }

    #[test]
    fn names_normalize_dashes_and_suffixes() {
        assert_eq!(module_name("kernel/arch/x86/kvm/kvm-amd.ko"), "kvm_amd");
        assert_eq!(module_name("kvm-amd"), "kvm_amd");
        assert_eq!(module_name("a/b/thing.ko.xz"), "thing");
    }

    #[test]
    fn resolves_dependencies_first_each_once() {
        let index = ModuleIndex::parse(DEP, "kernel/drivers/virtio/virtio_pci.ko\n").unwrap();
        let order = index.resolve(&["kvm-amd", "9pnet_virtio", "9p"]).unwrap();
        assert_eq!(
            names(&order),
            [
                "irqbypass",
                "kvm",
                "ccp",
                "kvm_amd",
                "virtio_ring",
                "virtio",
                "9pnet",
                "9pnet_virtio",
                "netfs",
                "fscache",
                "9p"
            ]
        );
        assert_deps_first(&index, &order);
    }

    #[test]
    fn builtin_modules_are_skipped_and_unknown_ones_fail() {
        let index = ModuleIndex::parse(DEP, "kernel/drivers/virtio/virtio_pci.ko\n").unwrap();
        assert!(index.is_builtin("virtio-pci"));
        assert_eq!(
            index.resolve(&["virtio_pci"]).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            index.resolve(&["nope"]),
            Err(KmodError::Unknown("nope".into()))
        );
    }

    #[test]
    fn compressed_modules_are_refused() {
        let index = ModuleIndex::parse(DEP, "").unwrap();
        assert!(matches!(
            index.resolve(&["thing"]),
            Err(KmodError::Compressed(_))
        ));
    }

    #[test]
    fn cycles_do_not_loop() {
        let index = ModuleIndex::parse("a.ko: b.ko\nb.ko: a.ko\n", "").unwrap();
        let order = index.resolve(&["a"]).unwrap();
        assert_eq!(names(&order), ["b", "a"]);
    }

    #[test]
    fn malformed_lines_are_reported() {
        assert_eq!(
            ModuleIndex::parse("kernel/x.ko\n", "").unwrap_err(),
            KmodError::Malformed {
                line: 1,
                reason: "no ':'"
            }
        );
    }
}
