//! One vCPU's architectural state: what KVM_GET_* hands out and KVM_SET_*
//! takes back, in the order KVM needs it.

use kvm_bindings::{
    kvm_debugregs, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_regs, kvm_sregs,
    kvm_vcpu_events, kvm_xcrs, kvm_xsave, Msrs,
};
use kvm_ioctls::{Cap, Kvm, VcpuFd};
use serde::{Deserialize, Serialize};

use super::{kvm_err, SnapshotError};

const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_TSC_DEADLINE: u32 = 0x6e0;
const TSS_AVAILABLE: u8 = 9;
const TSS_BUSY: u8 = 11;

/// Whether KVM runs on an AMD CPU (SVM). Asked once per process: the
/// CPUID query is a dear ioctl on the restore path, and the answer cannot
/// change.
fn is_amd(kvm: &Kvm) -> bool {
    static AMD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AMD.get_or_init(|| vendor_is_amd(kvm))
}

fn vendor_is_amd(kvm: &Kvm) -> bool {
    kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .ok()
        .and_then(|c| c.as_slice().iter().find(|e| e.function == 0).copied())
        .is_some_and(|e| {
            e.ebx.to_le_bytes() == *b"Auth"
                && e.edx.to_le_bytes() == *b"enti"
                && e.ecx.to_le_bytes() == *b"cAMD"
        })
}

/// KVM takes at most this many MSRs per call.
const MSR_CHUNK: usize = 64;

#[derive(Debug, Serialize, Deserialize)]
pub struct VcpuState {
    pub mp_state: kvm_mp_state,
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub xsave: kvm_xsave,
    pub xcrs: kvm_xcrs,
    pub debug_regs: kvm_debugregs,
    pub lapic: kvm_lapic_state,
    pub msrs: Vec<kvm_msr_entry>,
    pub events: kvm_vcpu_events,
}

/// The MSRs KVM can save and restore, the TSC first and the TSC deadline
/// last: KVM reads a deadline relative to the TSC already set.
pub fn msr_indices(kvm: &Kvm) -> Result<Vec<u32>, SnapshotError> {
    let list = kvm
        .get_msr_index_list()
        .map_err(kvm_err("KVM_GET_MSR_INDEX_LIST"))?;
    let mut out: Vec<u32> = vec![MSR_IA32_TSC];
    out.extend(
        list.as_slice()
            .iter()
            .copied()
            .filter(|&i| i != MSR_IA32_TSC && i != MSR_IA32_TSC_DEADLINE),
    );
    if list.as_slice().contains(&MSR_IA32_TSC_DEADLINE) {
        out.push(MSR_IA32_TSC_DEADLINE);
    }
    Ok(out)
}

/// The 4 KiB `kvm_xsave` holds the whole FPU state only where KVM's xsave
/// area is no larger (no AMX); a larger one would be cut short silently.
fn check_xsave_size(kvm: &Kvm) -> Result<(), SnapshotError> {
    let size = kvm.check_extension_int(Cap::Xsave2);
    if size > 4096 {
        return Err(SnapshotError::Mismatch(format!(
            "this CPU's xsave area is {size} bytes; snapshots handle 4096"
        )));
    }
    Ok(())
}

fn entries(indices: &[u32]) -> Result<Msrs, SnapshotError> {
    let e: Vec<kvm_msr_entry> = indices
        .iter()
        .map(|&index| kvm_msr_entry {
            index,
            ..Default::default()
        })
        .collect();
    Msrs::from_entries(&e).map_err(|e| SnapshotError::Mismatch(format!("MSR list: {e:?}")))
}

/// Reads every MSR in `indices` that this vCPU has; KVM stops at the
/// first one it cannot read, which is then left out.
fn read_msrs(fd: &VcpuFd, indices: &[u32]) -> Result<Vec<kvm_msr_entry>, SnapshotError> {
    let mut out = Vec::with_capacity(indices.len());
    let mut rest = indices;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(MSR_CHUNK)];
        let mut msrs = entries(chunk)?;
        let n = fd.get_msrs(&mut msrs).map_err(kvm_err("KVM_GET_MSRS"))?;
        out.extend_from_slice(&msrs.as_slice()[..n.min(chunk.len())]);
        if n < chunk.len() {
            tracing::trace!(msr = chunk[n], "MSR not readable; not saved");
            rest = &rest[n + 1..];
        } else {
            rest = &rest[chunk.len()..];
        }
    }
    Ok(out)
}

impl VcpuState {
    /// Of a vCPU that is out of KVM_RUN with no I/O left to complete.
    pub fn save(kvm: &Kvm, fd: &VcpuFd, msr_indices: &[u32]) -> Result<VcpuState, SnapshotError> {
        check_xsave_size(kvm)?;
        Ok(VcpuState {
            mp_state: fd.get_mp_state().map_err(kvm_err("KVM_GET_MP_STATE"))?,
            regs: fd.get_regs().map_err(kvm_err("KVM_GET_REGS"))?,
            sregs: fd.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?,
            xsave: fd.get_xsave().map_err(kvm_err("KVM_GET_XSAVE"))?,
            xcrs: fd.get_xcrs().map_err(kvm_err("KVM_GET_XCRS"))?,
            debug_regs: fd.get_debug_regs().map_err(kvm_err("KVM_GET_DEBUGREGS"))?,
            lapic: fd.get_lapic().map_err(kvm_err("KVM_GET_LAPIC"))?,
            msrs: read_msrs(fd, msr_indices)?,
            events: fd
                .get_vcpu_events()
                .map_err(kvm_err("KVM_GET_VCPU_EVENTS"))?,
        })
    }

    /// Into a new vCPU whose CPUID is already set. Sregs before the LAPIC
    /// (they carry the APIC base), the LAPIC before the MSRs (the TSC
    /// deadline timer lives there), events last.
    pub fn restore(&self, kvm: &Kvm, fd: &VcpuFd) -> Result<(), SnapshotError> {
        check_xsave_size(kvm)?;
        fd.set_mp_state(self.mp_state)
            .map_err(kvm_err("KVM_SET_MP_STATE"))?;
        fd.set_regs(&self.regs).map_err(kvm_err("KVM_SET_REGS"))?;
        let mut sregs = self.sregs;
        if sregs.tr.type_ == TSS_BUSY && is_amd(kvm) {
            // KVM on SVM always reports the task register's TSS as busy
            // (it adds the bit on read; the VMCB may hold it as available).
            // AMD CPUs ignore the type in long mode, but QEMU's emulated
            // SVM (the test host) fails every I/O-bitmap check on a busy
            // TSS with #GP: the guest's ioperm() users died after a
            // restore. Intel's VM entry requires busy; only AMD gets it
            // back as available.
            sregs.tr.type_ = TSS_AVAILABLE;
        }
        fd.set_sregs(&sregs).map_err(kvm_err("KVM_SET_SREGS"))?;
        // SAFETY: `kvm_xsave` is the 4 KiB legacy layout and KVM's xsave
        // area is no larger (checked above), so KVM reads only within it.
        unsafe { fd.set_xsave(&self.xsave) }.map_err(kvm_err("KVM_SET_XSAVE"))?;
        fd.set_xcrs(&self.xcrs).map_err(kvm_err("KVM_SET_XCRS"))?;
        fd.set_debug_regs(&self.debug_regs)
            .map_err(kvm_err("KVM_SET_DEBUGREGS"))?;
        fd.set_lapic(&self.lapic)
            .map_err(kvm_err("KVM_SET_LAPIC"))?;
        for chunk in self.msrs.chunks(MSR_CHUNK) {
            let msrs = Msrs::from_entries(chunk)
                .map_err(|e| SnapshotError::Mismatch(format!("MSR list: {e:?}")))?;
            let n = fd.set_msrs(&msrs).map_err(kvm_err("KVM_SET_MSRS"))?;
            if n < chunk.len() {
                return Err(SnapshotError::Mismatch(format!(
                    "KVM refused to set MSR {:#x}",
                    chunk[n].index
                )));
            }
        }
        fd.set_vcpu_events(&self.events)
            .map_err(kvm_err("KVM_SET_VCPU_EVENTS"))?;
        Ok(())
    }
}
