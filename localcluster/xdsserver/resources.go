package main

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	// The xDS resource types themselves.
	_ "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	// Types a pushed resource may carry in a typed_config (protojson resolves nested Any from the
	// global registry). Pushing an extension not imported here fails with "unable to resolve";
	// add its package here.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// document is the body of PUT /snapshots/{node}: one version for every resource type in it.
type document struct {
	Version   string            `json:"version"`
	Resources []json.RawMessage `json:"resources"`
}

// parsed is a snapshot ready for the cache plus what /status reports of it.
type parsed struct {
	snapshot *cachev3.Snapshot
	version  string
	names    map[string][]string // type URL -> resource names, sorted
}

// parseDocument turns a document into a snapshot. With check, every resource must pass its proto
// validation rules (protoc-gen-validate) and the snapshot must be consistent (every RDS/EDS name a
// listener or cluster refers to is in it, and nothing else): in ADS mode the cache holds back a
// response whose names differ from the request's, so an inconsistent snapshot would stall Envoy.
func parseDocument(body []byte, check bool) (*parsed, error) {
	var doc document
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("document: %w", err)
	}
	if doc.Version == "" {
		return nil, fmt.Errorf("document: no version")
	}
	byType := map[string][]types.Resource{}
	names := map[string][]string{}
	seen := map[string]bool{}
	for i, raw := range doc.Resources {
		res, typeURL, err := parseResource(raw)
		if err != nil {
			return nil, fmt.Errorf("resource %d: %w", i, err)
		}
		name := cachev3.GetResourceName(res)
		if name == "" {
			return nil, fmt.Errorf("resource %d (%s): no name", i, typeURL)
		}
		key := typeURL + "/" + name
		if seen[key] {
			return nil, fmt.Errorf("resource %d: duplicate %s %q", i, typeURL, name)
		}
		seen[key] = true
		if check {
			if v, ok := res.(interface{ ValidateAll() error }); ok {
				if err := v.ValidateAll(); err != nil {
					return nil, fmt.Errorf("resource %d (%s %q): %w", i, typeURL, name, err)
				}
			}
		}
		byType[typeURL] = append(byType[typeURL], res)
		names[typeURL] = append(names[typeURL], name)
	}
	for _, list := range names {
		sort.Strings(list)
	}
	snapshot, err := cachev3.NewSnapshot(doc.Version, byType)
	if err != nil {
		return nil, err
	}
	if check {
		if err := snapshot.Consistent(); err != nil {
			return nil, fmt.Errorf("inconsistent snapshot: %w", err)
		}
	}
	return &parsed{snapshot: snapshot, version: doc.Version, names: names}, nil
}

// parseResource reads one resource in Envoy's v3 proto JSON form, its type named by "@type".
func parseResource(raw json.RawMessage) (types.Resource, string, error) {
	var packed anypb.Any
	if err := protojson.Unmarshal(raw, &packed); err != nil {
		return nil, "", err
	}
	typeURL := packed.GetTypeUrl()
	if cachev3.GetResponseType(typeURL) == types.UnknownType {
		return nil, "", fmt.Errorf("%q is not an xDS resource type", typeURL)
	}
	msg, err := packed.UnmarshalNew()
	if err != nil {
		return nil, "", err
	}
	return msg, typeURL, nil
}
