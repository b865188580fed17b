package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// defaultNode names the snapshot served to every node that has none of its own (pods in a Deployment
// have generated names, so a test cannot know their node ids in advance).
const defaultNode = "*"

const maxBody = 64 << 20

// store holds the pushed snapshots and puts them into the cache: a node's own, else the default.
type store struct {
	cache    cachev3.SnapshotCache
	tracker  *tracker
	log      *slog.Logger
	mu       sync.Mutex
	own      map[string]*entry
	fallback *entry
	served   map[string]*entry // what the cache holds per node
}

type entry struct {
	*parsed
	at time.Time
}

func newStore(cache cachev3.SnapshotCache, log *slog.Logger) *store {
	s := &store{cache: cache, tracker: newTracker(log), log: log, own: map[string]*entry{}, served: map[string]*entry{}}
	s.tracker.onNode = s.nodeSeen
	return s
}

func (s *store) set(ctx context.Context, node string, p *parsed) error {
	e := &entry{parsed: p, at: time.Now().UTC()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if node != defaultNode {
		s.own[node] = e
		return s.serve(ctx, node, e)
	}
	s.fallback = e
	for _, n := range s.tracker.knownNodes() {
		if s.own[n] == nil {
			if err := s.serve(ctx, n, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// nodeSeen gives a newly connected node the default snapshot before the cache answers its first request.
func (s *store) nodeSeen(node string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.own[node] == nil && s.fallback != nil && s.served[node] != s.fallback {
		if err := s.serve(context.Background(), node, s.fallback); err != nil {
			s.log.Error("serve-default", "node", node, "error", err.Error())
		}
	}
}

func (s *store) serve(ctx context.Context, node string, e *entry) error {
	if err := s.cache.SetSnapshot(ctx, node, e.snapshot); err != nil {
		return err
	}
	s.served[node] = e
	return nil
}

// load serves the snapshots of a file {node: document} (what -snapshots names).
func (s *store) load(ctx context.Context, path string) error {
	body, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var docs map[string]json.RawMessage
	if err := json.Unmarshal(body, &docs); err != nil {
		return err
	}
	for node, doc := range docs {
		p, err := parseDocument(doc, true)
		if err != nil {
			return fmt.Errorf("node %q: %w", node, err)
		}
		if err := s.set(ctx, node, p); err != nil {
			return err
		}
		s.log.Info("push", "node", node, "version", p.version, "types", len(p.names), "source", path)
	}
	return nil
}

type snapshotView struct {
	Version   string              `json:"version"`
	Default   bool                `json:"default"` // served from node "*"
	Pushed    time.Time           `json:"pushed"`
	Resources map[string][]string `json:"resources"` // type URL -> names
}

func (s *store) snapshotsView() map[string]snapshotView {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]snapshotView{}
	view := func(e *entry, isDefault bool) snapshotView {
		return snapshotView{Version: e.version, Default: isDefault, Pushed: e.at, Resources: e.names}
	}
	for node, e := range s.served {
		out[node] = view(e, s.own[node] == nil)
	}
	for node, e := range s.own { // pushed for nodes that have not connected yet
		out[node] = view(e, false)
	}
	if s.fallback != nil {
		out[defaultNode] = view(s.fallback, true)
	}
	return out
}

func (s *store) handler(ctx context.Context) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /snapshots/{node}", func(w http.ResponseWriter, r *http.Request) { s.push(ctx, w, r) })
	mux.HandleFunc("POST /snapshots/{node}", func(w http.ResponseWriter, r *http.Request) { s.push(ctx, w, r) })
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		tv := s.tracker.view()
		writeJSON(w, http.StatusOK, map[string]any{
			"snapshots": s.snapshotsView(), "streams": tv.Streams, "nodes": tv.Nodes,
		})
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "serving"})
	})
	return mux
}

func (s *store) push(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	node := r.PathValue("node")
	check := r.URL.Query().Get("validate") != "false"
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err == nil {
		var p *parsed
		if p, err = parseDocument(body, check); err == nil {
			if err = s.set(ctx, node, p); err == nil {
				s.log.Info("push", "node", node, "version", p.version, "types", len(p.names), "validated", check)
				writeJSON(w, http.StatusOK, map[string]any{"node": node, "version": p.version, "resources": p.names})
				return
			}
		}
	}
	s.log.Warn("push-rejected", "node", node, "error", err.Error())
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}
