//! The VM-wide state KVM keeps in the kernel: the two PICs, the IOAPIC,
//! the PIT and the guest clock (kvmclock's base).

use kvm_bindings::{
    kvm_clock_data, kvm_irqchip, kvm_pit_state2, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::VmFd;
use serde::{Deserialize, Serialize};

use super::{kvm_err, SnapshotError};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MachineState {
    pub pic_master: kvm_irqchip,
    pub pic_slave: kvm_irqchip,
    pub ioapic: kvm_irqchip,
    pub pit: kvm_pit_state2,
    pub clock: kvm_clock_data,
}

fn chip(vm: &VmFd, id: u32) -> Result<kvm_irqchip, SnapshotError> {
    let mut c = kvm_irqchip {
        chip_id: id,
        ..Default::default()
    };
    vm.get_irqchip(&mut c).map_err(kvm_err("KVM_GET_IRQCHIP"))?;
    Ok(c)
}

impl MachineState {
    pub fn save(vm: &VmFd) -> Result<MachineState, SnapshotError> {
        Ok(MachineState {
            pic_master: chip(vm, KVM_IRQCHIP_PIC_MASTER)?,
            pic_slave: chip(vm, KVM_IRQCHIP_PIC_SLAVE)?,
            ioapic: chip(vm, KVM_IRQCHIP_IOAPIC)?,
            pit: vm.get_pit2().map_err(kvm_err("KVM_GET_PIT2"))?,
            clock: vm.get_clock().map_err(kvm_err("KVM_GET_CLOCK"))?,
        })
    }

    /// Into a VM whose irqchip and PIT exist and whose vCPUs do not run yet.
    pub fn restore(&self, vm: &VmFd) -> Result<(), SnapshotError> {
        let ids = [
            (&self.pic_master, KVM_IRQCHIP_PIC_MASTER),
            (&self.pic_slave, KVM_IRQCHIP_PIC_SLAVE),
            (&self.ioapic, KVM_IRQCHIP_IOAPIC),
        ];
        for (c, id) in ids {
            if c.chip_id != id {
                return Err(SnapshotError::Mismatch(format!(
                    "irqchip {id} saved as chip {}",
                    c.chip_id
                )));
            }
            vm.set_irqchip(c).map_err(kvm_err("KVM_SET_IRQCHIP"))?;
        }
        vm.set_pit2(&self.pit).map_err(kvm_err("KVM_SET_PIT2"))?;
        // Without flags: the guest's clock continues from the saved value
        // rather than jumping by the time the snapshot sat on disk, which
        // would fire every pending timer at once. The agent sets the wall
        // clock after the restore.
        let clock = kvm_clock_data {
            clock: self.clock.clock,
            ..Default::default()
        };
        vm.set_clock(&clock).map_err(kvm_err("KVM_SET_CLOCK"))?;
        Ok(())
    }
}
