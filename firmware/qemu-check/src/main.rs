//! The core's decode path on riscv32imc, the ESP32-C3's instruction set, under QEMU:
//!
//! ```sh
//! cargo build-qemu-check
//! qemu-system-riscv32 -machine virt -cpu rv32 -bios none -nographic \
//!     -semihosting-config enable=on,target=native -icount shift=0 \
//!     -kernel target/riscv32imc-unknown-none-elf/release/smarty-qemu-check
//! ```
//!
//! It decodes the real Luxembourg frame of the NEXXTLAB test meter (with its key, both from
//! `crates/smarty-p1/tests/data`) several times with [`smarty_p1::Decoder`], fed in chunks
//! the size of the ESP32's UART FIFO, checks the decoded values, and measures two budgets:
//! the instructions retired per frame (`minstret`; exact under `-icount`) and the heap's peak
//! (a counting allocator around the heap). It prints the figures as `key=value` lines for
//! `scripts/check` and exits through semihosting with 0 (PASS) or 1 (FAIL).

#![no_std]
#![no_main]

extern crate alloc;

use alloc::{format, string::String};
use core::{
    alloc::{GlobalAlloc, Layout},
    cell::Cell,
    mem::MaybeUninit,
};

use critical_section::Mutex;
use embedded_alloc::LlffHeap;
use riscv_rt::entry;
use semihosting::{println, process};
use smarty_p1::{Decoder, DecoderConfig, Key};

/// The real frame, as hex text, and its manifest entry (with the key).
const FRAME_HEX: &str = include_str!(
    "../../../crates/smarty-p1/tests/data/encrypted/nexxtlab_lux_t210d_fc0005a8e3.hex"
);
const FRAME_JSON: &str = include_str!(
    "../../../crates/smarty-p1/tests/data/encrypted/nexxtlab_lux_t210d_fc0005a8e3.json"
);

/// How many times the frame is decoded (the first includes the decoder's first allocations).
const FRAMES: usize = 8;
/// Bytes per `push`: the ESP32-C3's UART RX FIFO holds 128 bytes.
const CHUNK: usize = 128;
/// Budget: instructions retired for the slowest frame (push + decrypt + parse + readings).
const INSTRUCTIONS_PER_FRAME_BUDGET: u64 = 300_000;
/// Budget: the heap's peak while decoding (the dongle's heap arena is shared with Wi-Fi).
const HEAP_PEAK_BUDGET: usize = 16 * 1024;
/// The arena; far larger than the budget so that going over it is measured, not an abort.
const HEAP_SIZE: usize = 256 * 1024;

/// A heap that counts what is in use and its peak.
struct CountingHeap {
    heap: LlffHeap,
    in_use: Mutex<Cell<usize>>,
    peak: Mutex<Cell<usize>>,
}

impl CountingHeap {
    /// The bytes in use now and the peak since the last [`CountingHeap::reset_peak`].
    fn figures(&self) -> (usize, usize) {
        critical_section::with(|cs| (self.in_use.borrow(cs).get(), self.peak.borrow(cs).get()))
    }

    /// Starts a new peak from what is in use now.
    fn reset_peak(&self) {
        critical_section::with(|cs| self.peak.borrow(cs).set(self.in_use.borrow(cs).get()));
    }
}

// SAFETY: `GlobalAlloc` is an unsafe trait; every call is passed on unchanged to the
// embedded-alloc heap (which upholds the contract), only the byte counts are added.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout contract is passed on as is.
        let ptr = unsafe { self.heap.alloc(layout) };
        if !ptr.is_null() {
            critical_section::with(|cs| {
                let in_use = self.in_use.borrow(cs).get() + layout.size();
                self.in_use.borrow(cs).set(in_use);
                let peak = self.peak.borrow(cs);
                peak.set(peak.get().max(in_use));
            });
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout, as the caller guarantees.
        unsafe { self.heap.dealloc(ptr, layout) };
        critical_section::with(|cs| {
            let in_use = self.in_use.borrow(cs);
            in_use.set(in_use.get() - layout.size());
        });
    }
}

#[global_allocator]
static HEAP: CountingHeap = CountingHeap {
    heap: LlffHeap::empty(),
    in_use: Mutex::new(Cell::new(0)),
    peak: Mutex::new(Cell::new(0)),
};

/// The instructions retired so far (machine mode: QEMU starts the kernel there with `-bios none`).
fn instret() -> u64 {
    riscv::register::minstret::read64()
}

/// Sets up the heap, runs the check, exits with its result.
#[entry]
fn main() -> ! {
    {
        static mut ARENA: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];
        // SAFETY: the heap is initialised once, here, before the first allocation, with an
        // arena that nothing else uses (the runtime demands a raw pointer and size).
        #[allow(unsafe_code)]
        unsafe {
            HEAP.heap
                .init(core::ptr::addr_of_mut!(ARENA) as usize, HEAP_SIZE);
        }
    }
    let code = match run() {
        Ok(true) => {
            println!("result=PASS");
            0
        }
        Ok(false) => {
            println!("result=FAIL (over budget)");
            1
        }
        Err(message) => {
            println!("result=FAIL ({message})");
            1
        }
    };
    process::exit(code)
}

/// Decodes the frame [`FRAMES`] times; `Ok(within budgets)` or what went wrong.
fn run() -> Result<bool, String> {
    let frame = smarty_p1::hex::decode(FRAME_HEX).map_err(|e| format!("frame hex: {e}"))?;
    let key_at = FRAME_JSON
        .find("\"key\": \"")
        .ok_or("no key in the frame's .json")?
        + 8;
    let key: Key = FRAME_JSON
        .get(key_at..key_at + 32)
        .ok_or("short key")?
        .parse()
        .map_err(|e| format!("key: {e}"))?;
    println!("frame_bytes={}", frame.len());

    HEAP.reset_peak();
    let (heap_before, _) = HEAP.figures();
    let mut decoder = Decoder::new(DecoderConfig::new(key));
    let (mut first, mut min, mut max, mut total) = (0_u64, u64::MAX, 0_u64, 0_u64);
    for round in 0..FRAMES {
        let start = instret();
        let mut decoded = 0;
        for chunk in frame.chunks(CHUNK) {
            decoder.push(chunk);
            while let Some(result) = decoder.next() {
                let item = result.map_err(|e| format!("frame {round}: {e}"))?;
                let readings = item.telegram.readings();
                if readings.meter_id.as_deref() != Some("SAG1030700114004") {
                    return Err(format!("meter id {:?}", readings.meter_id));
                }
                let energy = readings.energy_import_kwh.map(|e| format!("{e}"));
                if energy.as_deref() != Some("6.695") {
                    return Err(format!("energy import {energy:?}"));
                }
                if item.frame.map(|f| f.frame_counter) != Some(0x0005_A8E3) {
                    return Err(format!("frame info {:?}", item.frame));
                }
                decoded += 1;
            }
        }
        let spent = instret() - start;
        if decoded != 1 {
            return Err(format!("frame {round}: {decoded} telegrams decoded, not 1"));
        }
        if round == 0 {
            first = spent;
        }
        min = min.min(spent);
        max = max.max(spent);
        total += spent;
    }
    let (heap_after, peak) = HEAP.figures();
    drop(decoder);
    let heap_peak = peak - heap_before;
    let kept = heap_after - heap_before;

    println!("frames={FRAMES}");
    println!("instructions_per_frame_first={first}");
    println!("instructions_per_frame_min={min}");
    println!("instructions_per_frame_max={max}");
    println!("instructions_per_frame_mean={}", total / FRAMES as u64);
    println!("instructions_per_frame_budget={INSTRUCTIONS_PER_FRAME_BUDGET}");
    println!("heap_peak_bytes={heap_peak}");
    println!("heap_kept_bytes={kept}");
    println!("heap_peak_budget={HEAP_PEAK_BUDGET}");
    Ok(max <= INSTRUCTIONS_PER_FRAME_BUDGET && heap_peak <= HEAP_PEAK_BUDGET)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("result=FAIL (panic: {info})");
    process::exit(2)
}
