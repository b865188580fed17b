// Command xds-server is a test fixture, not product code: an xDS control plane (ADS over gRPC,
// state of the world) built on go-control-plane's pkg/server/v3 and pkg/cache/v3, whose snapshots a
// test sets over a local HTTP endpoint and which reports what every connected Envoy ACKed or NACKed.
//
// HTTP API (on -http-listen):
//
//	PUT|POST /snapshots/{node}  {"version": "3", "resources": [<Envoy v3 proto JSON with "@type">, ...]}
//	                            node "*" is the default for every node without a snapshot of its own;
//	                            ?validate=false skips proto validation and the consistency check.
//	GET /status                 snapshots, open ADS streams with per-type sent/ACKed/NACKed versions,
//	                            per-node counters and the last NACK (see status.go).
//	GET /healthz                200 once serving.
//
// A NACKed version is not sent again until the next push (go-control-plane alone would resend it in a
// loop, go-control-plane#962; see status.go).
//
// One event per line on stdout (slog text: event=... key=value). SIGTERM or SIGINT closes every
// stream and exits 0; started again with the same flags it serves the same addresses (a test's
// control-plane outage), with -snapshots it also serves the same snapshots from its first request.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// The go-control-plane release this module pins (go.mod); reported at start.
const controlPlaneVersion = "v0.14.0"

type options struct {
	adsListen  string
	adsUnix    string
	httpListen string
	readyFile  string
	snapshots  string
}

func parseFlags() options {
	var o options
	flag.StringVar(&o.adsListen, "ads-listen", "127.0.0.1:0", "TCP address of the ADS gRPC server (port 0: any)")
	flag.StringVar(&o.adsUnix, "ads-unix", "", "also serve ADS on this unix socket path (replaced if stale)")
	flag.StringVar(&o.httpListen, "http-listen", "127.0.0.1:0", "TCP address of the control HTTP API")
	flag.StringVar(&o.readyFile, "ready-file", "", "write {\"ads\",\"http\",\"unix\"} addresses here once listening")
	flag.StringVar(&o.snapshots, "snapshots", "", "JSON file {node: snapshot document} to serve from the start")
	flag.Parse()
	return o
}

func newLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.MessageKey {
				a.Key = "event"
			}
			return a
		},
	}))
}

func main() {
	log := newLogger()
	if err := run(parseFlags(), log); err != nil {
		log.Error("fatal", "error", err.Error())
		os.Exit(1)
	}
}

func run(o options, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	cache := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, cacheLogger{log})
	store := newStore(cache, log)
	if o.snapshots != "" {
		if err := store.load(ctx, o.snapshots); err != nil {
			return fmt.Errorf("loading %s: %w", o.snapshots, err)
		}
	}
	xds := serverv3.NewServer(ctx, cache, store.tracker)

	// Keepalive as go-control-plane's example server: Envoy pings, and a dead peer is noticed.
	grpcServer := grpc.NewServer(
		grpc.MaxConcurrentStreams(1000),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 5 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(grpcServer, xds)

	adsTCP, err := net.Listen("tcp", o.adsListen)
	if err != nil {
		return err
	}
	var adsUnix net.Listener
	if o.adsUnix != "" {
		_ = os.Remove(o.adsUnix) // a socket file left by a killed predecessor
		if adsUnix, err = net.Listen("unix", o.adsUnix); err != nil {
			return err
		}
		defer os.Remove(o.adsUnix)
	}
	httpLn, err := net.Listen("tcp", o.httpListen)
	if err != nil {
		return err
	}
	httpServer := &http.Server{Handler: store.handler(ctx), ReadHeaderTimeout: 10 * time.Second}

	errs := make(chan error, 3)
	go func() { errs <- grpcServer.Serve(adsTCP) }()
	if adsUnix != nil {
		go func() { errs <- grpcServer.Serve(adsUnix) }()
	}
	go func() { errs <- httpServer.Serve(httpLn) }()

	log.Info("listening", "ads", adsTCP.Addr().String(), "unix", o.adsUnix, "http", httpLn.Addr().String(),
		"go_control_plane", controlPlaneVersion, "pid", os.Getpid())
	if o.readyFile != "" {
		if err := writeReady(o.readyFile, adsTCP.Addr().String(), o.adsUnix, httpLn.Addr().String()); err != nil {
			return err
		}
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	select {
	case sig := <-signals:
		log.Info("stop", "signal", sig.String())
	case err := <-errs:
		return err
	}
	// Stop, not GracefulStop: ADS streams never end by themselves, and an outage is what a test wants.
	grpcServer.Stop()
	shutdownCtx, done := context.WithTimeout(ctx, 5*time.Second)
	defer done()
	_ = httpServer.Shutdown(shutdownCtx)
	log.Info("stopped")
	return nil
}

// writeReady writes the bound addresses atomically: a reader never sees half a file.
func writeReady(path, ads, unix, httpAddr string) error {
	body, err := json.Marshal(map[string]string{"ads": ads, "unix": unix, "http": httpAddr})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ready-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(body); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// cacheLogger routes go-control-plane's own messages (e.g. "ADS mode: not responding ...") into our log;
// debug chatter is dropped.
type cacheLogger struct{ log *slog.Logger }

func (l cacheLogger) Debugf(string, ...any) {}
func (l cacheLogger) Infof(format string, args ...any) {
	l.log.Info("cache", "message", fmt.Sprintf(format, args...))
}
func (l cacheLogger) Warnf(format string, args ...any) {
	l.log.Warn("cache", "message", fmt.Sprintf(format, args...))
}
func (l cacheLogger) Errorf(format string, args ...any) {
	l.log.Error("cache", "message", fmt.Sprintf(format, args...))
}
