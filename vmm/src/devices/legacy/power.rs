//! A one-port power-off device. Without ACPI the guest kernel has no way to
//! power off, so the guest agent writes to this port instead.

use crate::devices::bus::BusDevice;
use crate::devices::ExitNotifier;
use crate::exit::VmExitReason;

pub struct PowerPort {
    exit: ExitNotifier,
}

impl PowerPort {
    pub fn new(exit: ExitNotifier) -> Self {
        Self { exit }
    }
}

impl BusDevice for PowerPort {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) {
        self.exit.notify(VmExitReason::PowerOff);
    }
}
