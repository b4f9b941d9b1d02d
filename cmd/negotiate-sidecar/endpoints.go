package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite"
)

// endpoint is a service endpoint and the keys that may sign its tokens.
// During a key rotation an endpoint has two keys (primary and secondary):
// whichever verifies the app's token signs the rewritten one.
type endpoint struct {
	hosts       []string // of its tokens' aud, as rewrite.CanonicalHost gives them
	clientHosts []string // of the URLs clients are sent to
	url         string   // the Endpoint, for logs
	sources     []string // where each key came from, in keys' order
	keys        [][]byte
	css         []rewrite.ConnectionString // each key's connection string, for check
}

// collectConnectionStrings gathers every connection string the sidecar
// trusts: those the app finds in the environment, --connection-string and
// the file's list, and the contents of each connection string file.
func collectConnectionStrings(s settings, env environment) ([]namedConnectionString, error) {
	all := connectionStringsFromEnv(env, s.Service)
	for i, cs := range s.SignalR.ConnectionStrings {
		all = append(all, namedConnectionString{source: fmt.Sprintf("connection string %d of the configuration", i+1), value: strings.TrimSpace(cs)})
	}
	var problems []error
	for _, path := range s.SignalR.ConnectionStringFiles {
		data, err := os.ReadFile(path)
		if err != nil {
			problems = append(problems, fmt.Errorf("connection string file: %w", err))
			continue
		}
		// Secrets mounted from Kubernetes often end with a newline.
		v := strings.TrimSpace(string(data))
		if v == "" {
			problems = append(problems, fmt.Errorf("connection string file %s is empty", path))
			continue
		}
		all = append(all, namedConnectionString{source: path, value: v})
	}
	if len(all) == 0 && len(problems) == 0 {
		setting := "AzureSignalRConnectionString (the app's own setting)"
		if s.Service == "webpubsub" {
			setting = "WebPubSubConnectionString (the app's own setting)"
		}
		problems = append(problems, fmt.Errorf("no connection string: set %s, --connection-string or --connection-string-file", setting))
	}
	return all, errors.Join(problems...)
}

// parseEndpoints parses the connection strings as the service's SDK reads
// them and groups their keys by endpoint. Errors name the source, never the
// value.
func parseEndpoints(list []namedConnectionString, service string) ([]endpoint, error) {
	format := formatOf(service)
	var endpoints []endpoint
	var problems []error
	for _, ncs := range list {
		cs, err := rewrite.ParseConnectionString(ncs.value)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", ncs.source, err))
			continue
		}
		k, err := format.Key(cs)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", ncs.source, err))
			continue
		}
		i := slices.IndexFunc(endpoints, func(e endpoint) bool {
			return slices.Equal(e.hosts, k.Hosts) && slices.Equal(e.clientHosts, k.ClientHosts)
		})
		if i < 0 {
			endpoints = append(endpoints, endpoint{hosts: k.Hosts, clientHosts: k.ClientHosts, url: k.Endpoint})
			i = len(endpoints) - 1
		}
		e := &endpoints[i]
		if slices.ContainsFunc(e.keys, func(b []byte) bool { return string(b) == string(k.Secret) }) {
			continue // the same key from two sources
		}
		e.keys = append(e.keys, k.Secret)
		e.sources = append(e.sources, ncs.source)
		e.css = append(e.css, cs)
	}
	return endpoints, errors.Join(problems...)
}

// formatOf is the token format of a validated service name.
func formatOf(service string) rewrite.Format {
	if service == "webpubsub" {
		return rewrite.WebPubSub
	}
	return rewrite.SignalR
}

// rewriteKeys turns endpoints into the rewriter's keys.
func rewriteKeys(endpoints []endpoint) []rewrite.Key {
	var keys []rewrite.Key
	for _, e := range endpoints {
		for _, k := range e.keys {
			keys = append(keys, rewrite.Key{Hosts: e.hosts, ClientHosts: e.clientHosts, Endpoint: e.url, Secret: k})
		}
	}
	return keys
}
