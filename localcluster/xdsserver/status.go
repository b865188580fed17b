package main

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc/peer"
)

// typeState is one resource type on one ADS stream, as /status reports it.
type typeState struct {
	Names   []string `json:"names"`   // resource names of the latest request (empty: wildcard)
	Version string   `json:"version"` // version_info of the latest request: what that Envoy runs
	Sent    string   `json:"sent"`    // version of the latest response
	Acked   string   `json:"acked"`   // latest version ACKed on this stream
	Nacked  string   `json:"nacked"`  // latest version NACKed on this stream
	Error   string   `json:"error"`   // that NACK's error_detail message
	Acks    int      `json:"acks"`
	Nacks   int      `json:"nacks"`

	sentNonce string
}

type streamState struct {
	ID     int64                 `json:"id"`
	Node   string                `json:"node"` // "" until the first request names it
	Peer   string                `json:"peer"`
	Opened time.Time             `json:"opened"`
	Types  map[string]*typeState `json:"types"`
}

type nackRecord struct {
	Stream  int64     `json:"stream"`
	Type    string    `json:"type"`
	Version string    `json:"version"`
	Error   string    `json:"error"`
	At      time.Time `json:"at"`
}

// nodeState outlives the node's streams: counters since this process started.
type nodeState struct {
	Streams  int         `json:"streams"` // open now
	Acks     int         `json:"acks"`
	Nacks    int         `json:"nacks"`
	LastNack *nackRecord `json:"last_nack"`
}

// tracker implements go-control-plane's server callbacks: it records what each stream was sent and
// what it ACKed or NACKed, and keeps a NACKed version from being sent again until the snapshot changes.
type tracker struct {
	serverv3.CallbackFuncs // no-ops for delta and REST

	log     *slog.Logger
	onNode  func(node string) // called (outside the lock) when a stream first names its node
	mu      sync.Mutex
	streams map[int64]*streamState
	nodes   map[string]*nodeState
}

func newTracker(log *slog.Logger) *tracker {
	return &tracker{log: log, streams: map[int64]*streamState{}, nodes: map[string]*nodeState{}}
}

func (t *tracker) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	address := ""
	if p, ok := peer.FromContext(ctx); ok {
		address = p.Addr.String()
	}
	t.mu.Lock()
	t.streams[id] = &streamState{ID: id, Peer: address, Opened: time.Now().UTC(), Types: map[string]*typeState{}}
	t.mu.Unlock()
	t.log.Info("stream-open", "stream", id, "peer", address)
	return nil
}

func (t *tracker) OnStreamClosed(id int64, node *core.Node) {
	t.mu.Lock()
	if st, ok := t.streams[id]; ok && st.Node != "" {
		t.node(st.Node).Streams--
	}
	delete(t.streams, id)
	t.mu.Unlock()
	t.log.Info("stream-closed", "stream", id, "node", node.GetId())
}

// OnStreamRequest runs before the cache sees the request, so it may still change it.
func (t *tracker) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	nodeID := req.GetNode().GetId() // the server fills in the stream's node when a request omits it
	t.mu.Lock()
	st, ok := t.streams[id]
	if !ok {
		t.mu.Unlock()
		return nil
	}
	firstSeen := st.Node == "" && nodeID != ""
	if firstSeen {
		st.Node = nodeID
		t.node(nodeID).Streams++
	}
	ts := st.typeState(req.GetTypeUrl())
	ts.Names = req.GetResourceNames()
	ts.Version = req.GetVersionInfo()
	nonce := req.GetResponseNonce()
	attrs := []any{"stream", id, "node", st.Node, "type", req.GetTypeUrl()}
	switch {
	case nonce == "":
		t.log.Info("subscribe", append(attrs, "version", req.GetVersionInfo(), "names", len(ts.Names))...)
	case nonce != ts.sentNonce:
		// A stale nonce: the server ignores the request (xDS protocol, "resource updates").
	case req.GetErrorDetail() == nil:
		ts.Acked = req.GetVersionInfo()
		ts.Acks++
		t.node(st.Node).Acks++
		t.log.Info("ack", append(attrs, "version", ts.Acked, "nonce", nonce)...)
	default:
		rejected := ts.Sent
		ts.Nacked, ts.Error = rejected, req.GetErrorDetail().GetMessage()
		ts.Nacks++
		n := t.node(st.Node)
		n.Nacks++
		n.LastNack = &nackRecord{Stream: id, Type: req.GetTypeUrl(), Version: rejected, Error: ts.Error, At: time.Now().UTC()}
		t.log.Warn("nack", append(attrs, "version", rejected, "running", req.GetVersionInfo(), "nonce", nonce,
			"error", ts.Error)...)
		// A NACK carries the last version Envoy accepted, which differs from the snapshot's, so the
		// snapshot cache would answer at once with the rejected resources again, forever
		// (go-control-plane#962, unchanged in v0.14.0: simple.go CreateWatch). Presenting the
		// rejected version parks the watch until the next snapshot, as Istio and Contour do.
		req.VersionInfo = rejected
	}
	t.mu.Unlock()
	if firstSeen && t.onNode != nil {
		t.onNode(nodeID)
	}
	return nil
}

func (t *tracker) OnStreamResponse(_ context.Context, id int64, req *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	t.mu.Lock()
	st, ok := t.streams[id]
	if !ok {
		t.mu.Unlock()
		return
	}
	ts := st.typeState(req.GetTypeUrl())
	ts.Sent, ts.sentNonce = resp.GetVersionInfo(), resp.GetNonce()
	node := st.Node
	t.mu.Unlock()
	t.log.Info("send", "stream", id, "node", node, "type", req.GetTypeUrl(), "version", resp.GetVersionInfo(),
		"nonce", resp.GetNonce(), "resources", len(resp.GetResources()))
}

// node is the state of a node id, created on first use; callers hold t.mu.
func (t *tracker) node(id string) *nodeState { return entryOf(t.nodes, id) }

func (st *streamState) typeState(typeURL string) *typeState { return entryOf(st.Types, typeURL) }

// entryOf returns m[key], storing a zero value there first if it is missing.
func entryOf[V any](m map[string]*V, key string) *V {
	v, ok := m[key]
	if !ok {
		v = new(V)
		m[key] = v
	}
	return v
}

// knownNodes lists every node a stream has named since this process started.
func (t *tracker) knownNodes() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.nodes))
	for n := range t.nodes {
		out = append(out, n)
	}
	return out
}

type trackerView struct {
	Streams []streamState        `json:"streams"` // open streams, by id
	Nodes   map[string]nodeState `json:"nodes"`
}

// view copies the tracker's state for /status.
func (t *tracker) view() trackerView {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := trackerView{Streams: []streamState{}, Nodes: map[string]nodeState{}}
	for _, st := range t.streams {
		c := *st
		c.Types = make(map[string]*typeState, len(st.Types))
		for k, v := range st.Types {
			tv := *v
			c.Types[k] = &tv
		}
		out.Streams = append(out.Streams, c)
	}
	sort.Slice(out.Streams, func(i, j int) bool { return out.Streams[i].ID < out.Streams[j].ID })
	for k, v := range t.nodes {
		out.Nodes[k] = *v
	}
	return out
}
