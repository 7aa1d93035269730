/* The DPDK API rvs uses: headers for bindgen, plus exported wrappers for
 * DPDK's `static inline` functions (bindgen cannot link against those). */
#ifndef RVS_DPDK_SHIM_H
#define RVS_DPDK_SHIM_H

#include <rte_config.h>
#include <rte_common.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>

int rvs_errno(void);
unsigned rvs_lcore_id(void);
uint64_t rvs_rdtsc(void);

uint16_t rvs_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t rvs_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);

struct rte_mbuf *rvs_pktmbuf_alloc(struct rte_mempool *mp);
void rvs_pktmbuf_free(struct rte_mbuf *m);
void rvs_pktmbuf_free_bulk(struct rte_mbuf **pkts, unsigned n);
char *rvs_pktmbuf_mtod(struct rte_mbuf *m);
uint16_t rvs_pktmbuf_data_len(const struct rte_mbuf *m);
uint32_t rvs_pktmbuf_pkt_len(const struct rte_mbuf *m);
uint16_t rvs_pktmbuf_nb_segs(const struct rte_mbuf *m);
uint16_t rvs_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t rvs_pktmbuf_tailroom(const struct rte_mbuf *m);
char *rvs_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *rvs_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *rvs_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int rvs_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
unsigned rvs_mempool_avail_count(const struct rte_mempool *mp);
unsigned rvs_mempool_in_use_count(const struct rte_mempool *mp);

#endif
