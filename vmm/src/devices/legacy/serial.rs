//! The 8250 console (vm-superio's UART) and where its output goes.
//!
//! Output is always scanned for the kernel's panic banner, even with the
//! console off (the kernel then prints only emergencies), so that a panic
//! followed by `panic=-1`'s reset is reported as a panic, not a reboot.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use vm_superio::serial::NoEvents;
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

impl SerialConsole {
    pub fn new(irq: IrqLine, out: ConsoleWriter) -> Self {
        Self {
            uart: Serial::new(irq, out),
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
