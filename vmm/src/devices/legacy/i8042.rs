//! Just enough of the i8042 keyboard controller for `reboot=k`: the kernel
//! waits for an empty input buffer, then writes the pulse-reset command.

use crate::devices::bus::BusDevice;
use crate::devices::ExitNotifier;
use crate::exit::VmExitReason;

const CMD_RESET_CPU: u8 = 0xfe;
/// Offset of the command/status port from the data port (0x64 - 0x60).
const CMD_OFFSET: u64 = 4;

pub struct I8042 {
    exit: ExitNotifier,
}

impl I8042 {
    pub fn new(exit: ExitNotifier) -> Self {
        Self { exit }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Status: output and input buffers empty; data: nothing to read.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == CMD_OFFSET && data.first() == Some(&CMD_RESET_CPU) {
            self.exit.notify(VmExitReason::Reset);
        }
    }
}
