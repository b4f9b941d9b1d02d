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
	hosts   []string // as rewrite.CanonicalHost gives them
	url     string   // the Endpoint, for logs
	sources []string // where each key came from, in keys' order
	keys    [][]byte
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

// parseEndpoints parses the connection strings and groups their keys by
// endpoint. Errors name the source, never the value.
func parseEndpoints(list []namedConnectionString) ([]endpoint, error) {
	var endpoints []endpoint
	var problems []error
	for _, ncs := range list {
		cs, err := rewrite.ParseConnectionString(ncs.value)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", ncs.source, err))
			continue
		}
		if cs.AccessKey == "" {
			problems = append(problems, fmt.Errorf("%s: AuthType=%s (Microsoft Entra ID) has no AccessKey; the sidecar signs tokens with an access key, so give it a connection string with AccessKey", ncs.source, cs.AuthType))
			continue
		}
		hosts := cs.Hosts()
		i := slices.IndexFunc(endpoints, func(e endpoint) bool { return slices.Equal(e.hosts, hosts) })
		if i < 0 {
			endpoints = append(endpoints, endpoint{hosts: hosts, url: cs.Endpoint.String()})
			i = len(endpoints) - 1
		}
		e := &endpoints[i]
		if slices.ContainsFunc(e.keys, func(k []byte) bool { return string(k) == cs.AccessKey }) {
			continue // the same key from two sources
		}
		e.keys = append(e.keys, []byte(cs.AccessKey))
		e.sources = append(e.sources, ncs.source)
	}
	return endpoints, errors.Join(problems...)
}

// rewriteKeys turns endpoints into the rewriter's keys.
func rewriteKeys(endpoints []endpoint) []rewrite.Key {
	var keys []rewrite.Key
	for _, e := range endpoints {
		for _, k := range e.keys {
			keys = append(keys, rewrite.Key{Hosts: e.hosts, Secret: k})
		}
	}
	return keys
}
