//! Safe wrappers over DPDK: the only module in rvs with `unsafe`.
//!
//! EAL initialisation, the mbuf pool, ports and their queues, an owning
//! [`Mbuf`], RX bursts and buffered TX that frees what a partial burst did not
//! send, lcore launch, and the TSC clock.

#![allow(unsafe_code)]

pub mod sys;

use std::ffi::{c_void, CStr, CString};
use std::fmt;
use std::ptr::NonNull;

use crate::addr::MacAddr;

/// Most packets handled per RX call and per TX call.
pub const BURST: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkError {
    pub what: String,
    pub code: i32,
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.what, strerror(self.code))
    }
}

impl std::error::Error for DpdkError {}

fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local
    // NUL-terminated string that lives at least until the next call.
    let text = unsafe { CStr::from_ptr(sys::rte_strerror(code.abs())) };
    format!("{} ({})", text.to_string_lossy(), code)
}

fn check(what: &str, rc: i32) -> Result<i32, DpdkError> {
    if rc < 0 {
        Err(DpdkError {
            what: what.to_string(),
            code: rc,
        })
    } else {
        Ok(rc)
    }
}

fn last_errno(what: &str) -> DpdkError {
    // SAFETY: reads the calling thread's rte_errno; always valid.
    let code = unsafe { sys::rvs_errno() };
    DpdkError {
        what: what.to_string(),
        code: -code.abs(),
    }
}

/// Initialises the EAL once for this process with `args` (args[0] is the
/// program name). The EAL cannot be initialised twice in one process.
pub fn eal_init(args: &[String]) -> Result<(), DpdkError> {
    let owned: Vec<CString> = args
        .iter()
        .map(|a| {
            CString::new(a.as_str()).map_err(|_| DpdkError {
                what: format!("EAL argument {a:?}"),
                code: -22,
            })
        })
        .collect::<Result<_, _>>()?;
    // The EAL keeps pointers into argv, so the strings are leaked on purpose.
    let mut argv: Vec<*mut libc::c_char> = owned.into_iter().map(|c| c.into_raw()).collect();
    let argc = argv.len() as i32;
    argv.push(std::ptr::null_mut());
    let argv = argv.leak();
    // SAFETY: argv holds argc valid NUL-terminated strings followed by NULL,
    // leaked so they outlive the EAL; rte_eal_init is called from the main thread.
    let rc = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
    if rc < 0 {
        return Err(last_errno("rte_eal_init"));
    }
    Ok(())
}

/// Releases EAL resources at exit.
pub fn eal_cleanup() {
    // SAFETY: called once, from the main lcore, after all workers returned.
    unsafe {
        sys::rte_eal_cleanup();
    }
}

/// The lcore id of the calling thread (`u32::MAX` for a non-EAL thread).
pub fn lcore_id() -> u32 {
    // SAFETY: reads a per-thread variable.
    unsafe { sys::rvs_lcore_id() }
}

/// Numa socket of the calling lcore, for allocations.
fn socket_id() -> i32 {
    // SAFETY: pure query.
    unsafe { sys::rte_socket_id() as i32 }
}

/// The CPU time-stamp counter; with [`tsc_hz`] it is rvs's monotonic clock.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: reads the TSC; no memory is touched.
    unsafe { sys::rvs_rdtsc() }
}

pub fn tsc_hz() -> u64 {
    // SAFETY: pure query, valid after EAL init.
    unsafe { sys::rte_get_tsc_hz() }
}

/// Runs `work` on worker lcore `lcore`. Use [`wait_all_workers`] to join.
pub fn launch_on_lcore(lcore: u32, work: Box<dyn FnOnce() -> i32 + Send>) -> Result<(), DpdkError> {
    extern "C" fn trampoline(arg: *mut c_void) -> i32 {
        // SAFETY: arg is the Box<Box<dyn FnOnce>> leaked below, reclaimed exactly once here.
        let work = unsafe { Box::from_raw(arg as *mut Box<dyn FnOnce() -> i32 + Send>) };
        work()
    }
    let arg = Box::into_raw(Box::new(work)) as *mut c_void;
    // SAFETY: trampoline has the lcore_function_t signature and owns arg.
    let rc = unsafe { sys::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
    if rc < 0 {
        // SAFETY: the launch failed, so the trampoline will never run: reclaim arg.
        drop(unsafe { Box::from_raw(arg as *mut Box<dyn FnOnce() -> i32 + Send>) });
        return Err(DpdkError {
            what: format!("launching lcore {lcore}"),
            code: rc,
        });
    }
    Ok(())
}

/// Waits until every worker lcore has returned.
pub fn wait_all_workers() {
    // SAFETY: called from the main lcore.
    unsafe { sys::rte_eal_mp_wait_lcore() };
}

/// A pool of packet buffers shared by every port and core.
pub struct Mempool {
    raw: NonNull<sys::rte_mempool>,
}

// SAFETY: DPDK mempools are multi-producer multi-consumer and thread-safe.
unsafe impl Send for Mempool {}
// SAFETY: as above; every operation on a pool is thread-safe.
unsafe impl Sync for Mempool {}

impl Mempool {
    pub fn new(name: &str, count: u32) -> Result<Self, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError {
            what: "mempool name".into(),
            code: -22,
        })?;
        let cache = 256.min(count / 4);
        // SAFETY: cname is a valid C string for the call; sizes are in range.
        let raw = unsafe {
            sys::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                count,
                cache,
                0,
                sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
                socket_id(),
            )
        };
        NonNull::new(raw)
            .map(|raw| Mempool { raw })
            .ok_or_else(|| last_errno("rte_pktmbuf_pool_create"))
    }

    /// A fresh packet buffer, or `None` when the pool is empty.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool pointer is valid for the life of self.
        let raw = unsafe { sys::rvs_pktmbuf_alloc(self.raw.as_ptr()) };
        NonNull::new(raw).map(|raw| Mbuf { raw })
    }

    /// Buffers currently handed out (including those in per-core caches' complement).
    pub fn in_use(&self) -> u32 {
        // SAFETY: pure query on a valid pool.
        unsafe { sys::rvs_mempool_in_use_count(self.raw.as_ptr()) }
    }

    pub fn available(&self) -> u32 {
        // SAFETY: pure query on a valid pool.
        unsafe { sys::rvs_mempool_avail_count(self.raw.as_ptr()) }
    }

    fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.raw.as_ptr()
    }
}

/// An owned packet buffer; freed back to its pool on `Drop`.
pub struct Mbuf {
    raw: NonNull<sys::rte_mbuf>,
}

// SAFETY: an Mbuf is uniquely owned; moving it to another thread moves the ownership.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of a buffer DPDK handed us.
    ///
    /// # Safety
    /// `raw` must be a valid mbuf owned by the caller and by no one else.
    unsafe fn from_raw(raw: *mut sys::rte_mbuf) -> Option<Self> {
        NonNull::new(raw).map(|raw| Mbuf { raw })
    }

    fn into_raw(self) -> *mut sys::rte_mbuf {
        let raw = self.raw.as_ptr();
        std::mem::forget(self);
        raw
    }

    /// Bytes of the first segment.
    #[inline]
    pub fn data(&self) -> &[u8] {
        // SAFETY: mtod points at data_len initialised bytes inside the buffer, which self owns.
        unsafe {
            let m = self.raw.as_ptr();
            std::slice::from_raw_parts(
                sys::rvs_pktmbuf_mtod(m) as *const u8,
                sys::rvs_pktmbuf_data_len(m) as usize,
            )
        }
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as data(); &mut self guarantees exclusive access.
        unsafe {
            let m = self.raw.as_ptr();
            std::slice::from_raw_parts_mut(
                sys::rvs_pktmbuf_mtod(m) as *mut u8,
                sys::rvs_pktmbuf_data_len(m) as usize,
            )
        }
    }

    /// Number of segments; rvs handles single-segment frames only.
    #[inline]
    pub fn segments(&self) -> u16 {
        // SAFETY: field read on a valid mbuf.
        unsafe { sys::rvs_pktmbuf_nb_segs(self.raw.as_ptr()) }
    }

    #[inline]
    pub fn len(&self) -> usize {
        // SAFETY: field read on a valid mbuf.
        unsafe { sys::rvs_pktmbuf_pkt_len(self.raw.as_ptr()) as usize }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes the packet `len` bytes long (first segment only), growing into
    /// tailroom or trimming. Returns false when it does not fit.
    pub fn set_len(&mut self, len: usize) -> bool {
        let current = self.data().len();
        let m = self.raw.as_ptr();
        if len >= current {
            let extra = len - current;
            if extra == 0 {
                return true;
            }
            // SAFETY: append only extends data_len/pkt_len within the buffer; it returns NULL if it cannot.
            extra <= u16::MAX as usize
                && !unsafe { sys::rvs_pktmbuf_append(m, extra as u16) }.is_null()
        } else {
            // SAFETY: trim shortens the last segment; current - len < data_len of the only segment.
            unsafe { sys::rvs_pktmbuf_trim(m, (current - len) as u16) == 0 }
        }
    }

    /// Adds `len` bytes in front of the data (for encapsulation). False when
    /// the headroom is too small.
    pub fn prepend(&mut self, len: usize) -> bool {
        // SAFETY: prepend moves data_off back within the headroom or returns NULL.
        len <= u16::MAX as usize
            && !unsafe { sys::rvs_pktmbuf_prepend(self.raw.as_ptr(), len as u16) }.is_null()
    }

    /// Removes `len` bytes from the front. False when the packet is shorter.
    pub fn strip_front(&mut self, len: usize) -> bool {
        // SAFETY: adj moves data_off forward within data_len or returns NULL.
        len <= u16::MAX as usize
            && !unsafe { sys::rvs_pktmbuf_adj(self.raw.as_ptr(), len as u16) }.is_null()
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: self owns the mbuf; after this call it is never used again.
        unsafe { sys::rvs_pktmbuf_free(self.raw.as_ptr()) }
    }
}

impl AsRef<[u8]> for Mbuf {
    fn as_ref(&self) -> &[u8] {
        self.data()
    }
}

impl AsMut<[u8]> for Mbuf {
    fn as_mut(&mut self) -> &mut [u8] {
        self.data_mut()
    }
}

/// Port counters as the NIC (or vdev) reports them.
#[derive(Debug, Default, Clone, Copy)]
pub struct PortStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_no_mbuf: u64,
}

/// An ethdev port, configured with one RX and one TX queue per worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    pub id: u16,
}

impl Port {
    /// Finds a probed port by device name (the vdev name before the first
    /// comma, or the PCI address).
    pub fn by_name(name: &str) -> Result<Port, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError {
            what: format!("port name {name:?}"),
            code: -22,
        })?;
        let mut id = 0u16;
        // SAFETY: cname is valid for the call; id is a valid out-pointer.
        let rc = unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        check(&format!("finding DPDK port {name:?}"), rc)?;
        Ok(Port { id })
    }

    /// Configures `queues` RX and TX queue pairs and starts the port in
    /// promiscuous mode.
    pub fn configure_and_start(
        &self,
        queues: u16,
        rx_desc: u16,
        tx_desc: u16,
        pool: &Mempool,
    ) -> Result<(), DpdkError> {
        let mut conf = sys::rte_eth_conf::default();
        if queues > 1 {
            // Spread flows over the queues by RSS where the device hashes
            // (NICs); vdevs without it (af_packet fans out by itself) get
            // no RSS request rather than a configuration error.
            let mut info = sys::rte_eth_dev_info::default();
            // SAFETY: info is a valid out-pointer; port id was probed.
            let rc = unsafe { sys::rte_eth_dev_info_get(self.id, &mut info) };
            check(&format!("reading device info of port {}", self.id), rc)?;
            let wanted =
                u64::from(sys::RTE_ETH_RSS_IP | sys::RTE_ETH_RSS_TCP | sys::RTE_ETH_RSS_UDP);
            let hf = wanted & info.flow_type_rss_offloads;
            if hf != 0 {
                conf.rxmode.mq_mode = sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
                conf.rx_adv_conf.rss_conf.rss_hf = hf;
            }
        }
        // SAFETY: conf is a valid configuration; port id was probed.
        let rc = unsafe { sys::rte_eth_dev_configure(self.id, queues, queues, &conf) };
        check(&format!("configuring port {}", self.id), rc)?;
        let (mut rx_desc, mut tx_desc) = (rx_desc, tx_desc);
        // SAFETY: valid port and out-pointers.
        let rc =
            unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(self.id, &mut rx_desc, &mut tx_desc) };
        check("adjusting descriptor counts", rc)?;
        // SAFETY: port is valid; SOCKET_ID_ANY lets the driver choose.
        let socket = unsafe { sys::rte_eth_dev_socket_id(self.id) };
        for q in 0..queues {
            // SAFETY: queue index < configured count; NULL conf = driver defaults; pool outlives the port.
            let rc = unsafe {
                sys::rte_eth_rx_queue_setup(
                    self.id,
                    q,
                    rx_desc,
                    socket as u32,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            check(&format!("setting up RX queue {q} on port {}", self.id), rc)?;
            // SAFETY: as above for TX.
            let rc = unsafe {
                sys::rte_eth_tx_queue_setup(self.id, q, tx_desc, socket as u32, std::ptr::null())
            };
            check(&format!("setting up TX queue {q} on port {}", self.id), rc)?;
        }
        // SAFETY: port configured above.
        let rc = unsafe { sys::rte_eth_dev_start(self.id) };
        check(&format!("starting port {}", self.id), rc)?;
        // Some vdevs do not support promiscuous mode; that is not fatal.
        // SAFETY: port started.
        unsafe { sys::rte_eth_promiscuous_enable(self.id) };
        Ok(())
    }

    pub fn mac(&self) -> Result<MacAddr, DpdkError> {
        let mut addr = sys::rte_ether_addr::default();
        // SAFETY: addr is a valid out-pointer.
        let rc = unsafe { sys::rte_eth_macaddr_get(self.id, &mut addr) };
        check("reading port MAC", rc)?;
        Ok(MacAddr(addr.addr_bytes))
    }

    pub fn stats(&self) -> PortStats {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: s is a valid out-pointer; failure leaves zeros.
        unsafe { sys::rte_eth_stats_get(self.id, &mut s) };
        PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_no_mbuf: s.rx_nombuf,
        }
    }

    pub fn stop_and_close(&self) {
        // SAFETY: workers have stopped using the port's queues.
        unsafe {
            sys::rte_eth_dev_stop(self.id);
            sys::rte_eth_dev_close(self.id);
        }
    }
}

/// The packets of one RX burst, handed out one by one as owned [`Mbuf`]s.
pub struct RxBurst {
    pkts: [*mut sys::rte_mbuf; BURST],
    len: usize,
    next: usize,
}

// SAFETY: the burst owns the mbufs it holds.
unsafe impl Send for RxBurst {}

impl Default for RxBurst {
    fn default() -> Self {
        RxBurst {
            pkts: [std::ptr::null_mut(); BURST],
            len: 0,
            next: 0,
        }
    }
}

impl RxBurst {
    /// Receives up to [`BURST`] packets from `queue` of `port`, replacing
    /// (and freeing) whatever the previous burst did not hand out.
    #[inline]
    pub fn receive(&mut self, port: Port, queue: u16) -> usize {
        self.receive_at_most(port, queue, BURST)
    }

    /// As [`RxBurst::receive`], taking at most `max` (≤ [`BURST`]) packets.
    #[inline]
    pub fn receive_at_most(&mut self, port: Port, queue: u16, max: usize) -> usize {
        self.free_rest();
        let max = max.min(BURST) as u16;
        // SAFETY: pkts has room for BURST ≥ max pointers; the queue belongs to this lcore.
        let n = unsafe { sys::rvs_rx_burst(port.id, queue, self.pkts.as_mut_ptr(), max) };
        self.len = n as usize;
        self.next = 0;
        self.len
    }

    fn free_rest(&mut self) {
        for p in &self.pkts[self.next..self.len] {
            // SAFETY: entries in next..len are owned and not yet handed out.
            unsafe { sys::rvs_pktmbuf_free(*p) };
        }
        self.len = 0;
        self.next = 0;
    }
}

impl Iterator for RxBurst {
    type Item = Mbuf;

    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        if self.next >= self.len {
            return None;
        }
        let raw = self.pkts[self.next];
        self.next += 1;
        // SAFETY: DPDK handed us this mbuf in the burst; each entry is yielded once.
        unsafe { Mbuf::from_raw(raw) }
    }
}

impl Drop for RxBurst {
    fn drop(&mut self) {
        self.free_rest();
    }
}

/// One TX queue of one port.
#[derive(Debug, Clone, Copy)]
pub struct TxQueue {
    pub port: Port,
    pub queue: u16,
}

impl TxQueue {
    /// Hands a prefix of `pkts` to the driver; returns how many it took.
    #[inline]
    fn send(&mut self, pkts: &mut [*mut sys::rte_mbuf]) -> usize {
        // SAFETY: pkts are owned mbufs; tx_burst takes ownership of the first n.
        unsafe {
            sys::rvs_tx_burst(
                self.port.id,
                self.queue,
                pkts.as_mut_ptr(),
                pkts.len() as u16,
            ) as usize
        }
    }
}

/// Buffers outgoing packets and sends them in bursts. Packets the queue does
/// not accept are freed and counted, as DPDK's l3fwd does.
pub struct TxBuffer {
    queue: TxQueue,
    pkts: [*mut sys::rte_mbuf; BURST],
    len: usize,
    /// Packets handed to the sink.
    pub sent: u64,
    /// Packets freed because the sink did not take them.
    pub dropped: u64,
}

// SAFETY: the buffer owns the mbufs it holds.
unsafe impl Send for TxBuffer {}

impl TxBuffer {
    pub fn new(queue: TxQueue) -> Self {
        TxBuffer {
            queue,
            pkts: [std::ptr::null_mut(); BURST],
            len: 0,
            sent: 0,
            dropped: 0,
        }
    }

    /// Queues `m`; sends a full burst when the buffer fills.
    #[inline]
    pub fn push(&mut self, m: Mbuf) {
        self.pkts[self.len] = m.into_raw();
        self.len += 1;
        if self.len == BURST {
            self.flush();
        }
    }

    pub fn pending(&self) -> usize {
        self.len
    }

    /// Sends what is buffered; frees and counts what the sink refused.
    #[inline]
    pub fn flush(&mut self) {
        if self.len == 0 {
            return;
        }
        let taken = self.queue.send(&mut self.pkts[..self.len]).min(self.len);
        for p in &self.pkts[taken..self.len] {
            // SAFETY: the sink did not take these; we still own them.
            unsafe { sys::rvs_pktmbuf_free(*p) };
        }
        self.sent += taken as u64;
        self.dropped += (self.len - taken) as u64;
        self.len = 0;
    }

    pub fn queue(&self) -> TxQueue {
        self.queue
    }
}

impl Drop for TxBuffer {
    fn drop(&mut self) {
        for p in &self.pkts[..self.len] {
            // SAFETY: buffered packets are owned by us.
            unsafe { sys::rvs_pktmbuf_free(*p) };
        }
    }
}
