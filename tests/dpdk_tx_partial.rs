//! A partial TX burst frees what the queue did not take (DPDK's l3fwd does
//! the same). Runs the EAL in this test process, on a `net_ring` vdev whose
//! ring fills up because nothing drains it.

use rvs::dpdk::{eal_init, Mempool, Port, RxBurst, TxBuffer, TxQueue};

#[test]
fn partial_tx_burst_frees_unsent_mbufs() {
    let args: Vec<String> = [
        "dpdk_tx_partial",
        "--no-huge",
        "-m",
        "256",
        "--no-pci",
        "--no-shconf",
        "-l",
        "0",
        "--log-level=error",
        "--vdev=net_ring0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    eal_init(&args).expect("EAL init");
    let pool = Mempool::new("tx_partial", 8191).expect("mempool");
    let port = Port::by_name("net_ring0").expect("net_ring0 probed");
    port.configure_and_start(1, 512, 512, &pool)
        .expect("port start");

    const OFFERED: u64 = 4000;
    let mut tx = TxBuffer::new(TxQueue { port, queue: 0 });
    for _ in 0..OFFERED {
        let mut m = pool.alloc().expect("mbuf");
        assert!(m.set_len(60));
        tx.push(m);
    }
    tx.flush();
    assert_eq!(tx.sent + tx.dropped, OFFERED);
    assert!(
        tx.dropped > 0,
        "the ring must fill up so that bursts are partial"
    );
    assert!(tx.sent > 0);
    // What was sent sits in the ring; everything refused went back to the pool.
    assert_eq!(pool.in_use() as u64, tx.sent, "unsent mbufs were not freed");

    // Drain the ring: every mbuf returns to the pool on Drop.
    let mut burst = RxBurst::default();
    let mut received = 0u64;
    while burst.receive(port, 0) > 0 {
        for m in &mut burst {
            assert_eq!(m.data().len(), 60);
            received += 1;
        }
    }
    assert_eq!(received, tx.sent);
    assert_eq!(pool.in_use(), 0, "mbufs leaked");
    port.stop_and_close();
}
