//! The 8250 console (vm-superio's UART) and where its output goes.
//!
//! Output is always scanned for the kernel's panic banner, even with the
//! console off (the kernel then prints only emergencies), so that a panic
//! followed by `panic=-1`'s reset is reported as a panic, not a reboot.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vm_superio::serial::{NoEvents, SerialState};
use vm_superio::Serial;

use crate::devices::bus::BusDevice;
use crate::devices::IrqLine;

const PANIC_BANNER: &[u8] = b"Kernel panic - not syncing";
const LINE_MAX: usize = 1024;

/// Console sink that also watches for the panic banner.
pub struct ConsoleWriter {
    sink: Option<Box<dyn Write + Send>>,
    /// The UART hands us one byte at a time; writing each to the sink
    /// would cost a syscall per byte, so whole lines go out.
    line: Vec<u8>,
    matched: usize,
    panicked: Arc<AtomicBool>,
}

impl ConsoleWriter {
    pub fn new(sink: Option<Box<dyn Write + Send>>, panicked: Arc<AtomicBool>) -> Self {
        Self {
            sink,
            line: Vec::with_capacity(LINE_MAX),
            matched: 0,
            panicked,
        }
    }

    fn scan(&mut self, buf: &[u8]) {
        for &b in buf {
            if b == PANIC_BANNER[self.matched] {
                self.matched += 1;
                if self.matched == PANIC_BANNER.len() {
                    self.panicked.store(true, Ordering::SeqCst);
                    self.matched = 0;
                }
            } else {
                self.matched = usize::from(b == PANIC_BANNER[0]);
            }
        }
    }
}

impl Write for ConsoleWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.scan(buf);
        if self.sink.is_none() {
            return Ok(buf.len());
        }
        self.line.extend_from_slice(buf);
        if self.line.len() >= LINE_MAX || buf.contains(&b'\n') {
            self.emit();
        }
        Ok(buf.len())
    }

    /// The UART flushes after every byte; we flush per line instead.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ConsoleWriter {
    fn emit(&mut self) {
        if let Some(s) = self.sink.as_mut() {
            // A console that cannot be written (closed pipe, full disk)
            // must not stop the guest: drop the output instead.
            if s.write_all(&self.line).and_then(|_| s.flush()).is_err() {
                self.sink = None;
            }
        }
        self.line.clear();
    }
}

pub struct SerialConsole {
    uart: Serial<IrqLine, NoEvents, ConsoleWriter>,
}

/// The UART's registers, as a snapshot keeps them (vm-superio's state
/// type is not serializable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialRegs {
    pub baud_divisor_low: u8,
    pub baud_divisor_high: u8,
    pub interrupt_enable: u8,
    pub interrupt_identification: u8,
    pub line_control: u8,
    pub line_status: u8,
    pub modem_control: u8,
    pub modem_status: u8,
    pub scratch: u8,
    pub in_buffer: Vec<u8>,
}

impl SerialConsole {
    pub fn new(irq: IrqLine, out: ConsoleWriter) -> Self {
        Self {
            uart: Serial::new(irq, out),
        }
    }

    /// A UART that continues where a saved one stood.
    pub fn restored(irq: IrqLine, out: ConsoleWriter, regs: &SerialRegs) -> io::Result<Self> {
        let state = SerialState {
            baud_divisor_low: regs.baud_divisor_low,
            baud_divisor_high: regs.baud_divisor_high,
            interrupt_enable: regs.interrupt_enable,
            interrupt_identification: regs.interrupt_identification,
            line_control: regs.line_control,
            line_status: regs.line_status,
            modem_control: regs.modem_control,
            modem_status: regs.modem_status,
            scratch: regs.scratch,
            in_buffer: regs.in_buffer.clone(),
        };
        let uart = Serial::from_state(&state, irq, NoEvents, out)
            .map_err(|e| io::Error::other(format!("saved UART state: {e:?}")))?;
        Ok(Self { uart })
    }

    pub fn regs(&self) -> SerialRegs {
        let s = self.uart.state();
        SerialRegs {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer,
        }
    }
}

impl BusDevice for SerialConsole {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let (Some(b), Ok(off)) = (data.first_mut(), u8::try_from(offset)) {
            *b = self.uart.read(off);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Some(b), Ok(off)) = (data.first(), u8::try_from(offset)) {
            if let Err(e) = self.uart.write(off, *b) {
                tracing::debug!("serial write: {e:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_banner_is_found_across_writes() {
        let flag = Arc::new(AtomicBool::new(false));
        let mut w = ConsoleWriter::new(None, flag.clone());
        w.write_all(b"[ 1.0] KKernel pan").unwrap();
        assert!(!flag.load(Ordering::SeqCst));
        w.write_all(b"ic - not syncing: Attempted to kill init!")
            .unwrap();
        assert!(flag.load(Ordering::SeqCst));
    }

    #[test]
    fn ordinary_output_is_not_a_panic() {
        let flag = Arc::new(AtomicBool::new(false));
        let mut w = ConsoleWriter::new(None, flag.clone());
        w.write_all(b"Kernel panic tests passed - syncing").unwrap();
        assert!(!flag.load(Ordering::SeqCst));
    }
}
