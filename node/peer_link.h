/*
 * peer_link.h - the leader's side of replication: one Replicate stream per peer while this
 * node leads.
 *
 * Each peer has a thread of this module for the node's whole life. While this node leads
 * term T (st_peer_links_role) the thread keeps a bidi /strata.v1.Replication/Replicate call
 * open to its peer and loops: st_replica_ship_next(peer, T) → send it (one send in flight per
 * call). The answers arrive concurrently on the peer client's poller thread, which hands each
 * to st_replica_on_follower_message in order. When the stream fails or closes (the peer is
 * down, restarted, or refused a message) the thread waits until every operation of the call
 * has completed, calls st_replica_link_down, and opens a new stream after 20-50 ms, as long as
 * ship_next still accepts T. It goes back to waiting when ship_next answers ST_NOT_LEADER.
 *
 * Log lines: link_up when a stream's first answer arrives, link_down when a stream that was up
 * breaks (or at the first failure to reach the peer in a term), with the gRPC status.
 *
 * Threads: st_peer_links_role from any thread (the replica's role_changed callback: it never
 * blocks). Order of life: create, attach the replica, ... st_replica_shutdown (optional but
 * faster), st_peer_links_stop, st_replica_destroy, st_peer_links_destroy.
 */
#ifndef STRATA_NODE_PEER_LINK_H
#define STRATA_NODE_PEER_LINK_H

#include <stdint.h>

#include "node/peer_client.h"
#include "replication/replica.h"

typedef struct st_peer_links st_peer_links;

/* A link thread per member of `cluster` other than self_id. pc is borrowed and outlives it.
   heartbeat_ms: the replica's, for pacing (see st_peer_links_kick). */
st_status st_peer_links_create(st_peer_client *pc, const st_cluster *cluster, uint32_t self_id,
                               uint32_t heartbeat_ms, st_peer_links **out);

/* The replica the links serve (borrowed until st_peer_links_stop returns). Set once. */
void st_peer_links_attach(st_peer_links *pl, st_replica *r);

/* The replica's role change: leading `term` starts the links for it; other roles let them
   end (ship_next tells them). Stale events (an older term) are ignored. */
void st_peer_links_role(st_peer_links *pl, st_role role, uint64_t term);

/*
 * Something new to ship (any thread; cheap): the leader's log grew. Links that are pausing
 * after a heartbeat ask st_replica_ship_next for their next message now.
 *
 * Why links pause: st_replica_ship_next returns an Append without records whenever the window
 * has room and nothing new is in the log (build_append sends even when it found no records;
 * reported to the replication owner), so a link that asked again at once would spin, flooding
 * its follower with thousands of empty messages a second. After an empty Append a link
 * therefore waits for a heartbeat period, a kick, or an answer that acknowledges new records,
 * asks to be resent from elsewhere, or needs a snapshot (those kick too, so followers learn a
 * new commit sequence at once).
 */
void st_peer_links_kick(st_peer_links *pl);

/* End every stream and join the threads; nothing calls into the replica afterwards. */
void st_peer_links_stop(st_peer_links *pl);

/* Stop (if needed) and free. Accepts NULL. */
void st_peer_links_destroy(st_peer_links *pl);

#endif
