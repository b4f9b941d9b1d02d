package rewrite

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
)

// NamedConnectionString is a connection string and where it came from; the
// source names it in logs and reports, since the value itself never appears.
type NamedConnectionString struct {
	Source string
	Value  string
}

// Sources are the places connection strings are read from, in order.
type Sources struct {
	// Env is the environment, where the app's own settings are read as the
	// app reads them (see Format.FromEnv).
	Env map[string]string
	// Inline are connection strings given directly, named by position.
	Inline []string
	// Files each hold one connection string, such as a mounted Secret.
	Files []string
}

// Collect gathers every connection string of the sources: the app's
// settings in the environment, the inline ones, then the contents of each
// file. A file that cannot be read or is empty is an error; the others are
// still returned. Values are trimmed.
func (f Format) Collect(src Sources) ([]NamedConnectionString, error) {
	all := f.FromEnv(src.Env)
	for i, cs := range src.Inline {
		all = append(all, NamedConnectionString{Source: fmt.Sprintf("connection string %d of the configuration", i+1), Value: strings.TrimSpace(cs)})
	}
	const fileHint = "; check --connection-string-file (connection_string_files in the file): it names a file holding one connection string, such as a mounted Secret's key"
	var problems []error
	for _, path := range src.Files {
		data, err := os.ReadFile(path)
		if err != nil {
			problems = append(problems, fmt.Errorf("connection string file: %w%s", err, fileHint))
			continue
		}
		// Secrets mounted from Kubernetes often end with a newline.
		v := strings.TrimSpace(string(data))
		if v == "" {
			problems = append(problems, fmt.Errorf("connection string file %s is empty", path))
			continue
		}
		all = append(all, NamedConnectionString{Source: path, Value: v})
	}
	return all, errors.Join(problems...)
}

// AppSetting is the setting an Azure Functions app reads its connection
// string from by default: AzureSignalRConnectionString or
// WebPubSubConnectionString.
func (f Format) AppSetting() string {
	if f.sdk == nil || len(f.sdk.appSettings) == 0 {
		return ""
	}
	return f.sdk.appSettings[0]
}

// FromEnv returns the connection strings the app itself would find in the
// environment: its default settings, and for SignalR each
// Azure__SignalR__Endpoints__<name> (with an optional ":primary" or
// ":secondary", or "__primary" or "__secondary", suffix). Kubernetes passes
// app settings as environment variables, where ':' is spelt "__". Sorted by
// variable name after the default settings, so that logs and reports are
// stable.
func (f Format) FromEnv(env map[string]string) []NamedConnectionString {
	if f.sdk == nil {
		return nil
	}
	var out []NamedConnectionString
	for _, n := range f.sdk.appSettings {
		if v := strings.TrimSpace(env[n]); v != "" {
			out = append(out, NamedConnectionString{Source: "$" + n, Value: v})
		}
	}
	var multi []NamedConnectionString
	for k, v := range env {
		for _, p := range f.sdk.endpointPrefixes {
			if len(k) > len(p) && strings.EqualFold(k[:len(p)], p) && strings.TrimSpace(v) != "" {
				multi = append(multi, NamedConnectionString{Source: "$" + k, Value: strings.TrimSpace(v)})
			}
		}
	}
	sort.Slice(multi, func(i, j int) bool { return multi[i].Source < multi[j].Source })
	return append(out, multi...)
}

// Endpoint is a service endpoint and the keys that may sign its tokens.
// During a key rotation an endpoint has two keys (primary and secondary):
// whichever verifies the app's token signs the rewritten one.
type Endpoint struct {
	Hosts       []string // of its tokens' aud, as CanonicalHost gives them
	ClientHosts []string // of the URLs clients are sent to
	URL         string   // the Endpoint, for logs
	Keys        []EndpointKey
}

// EndpointKey is one key of an endpoint and where it came from.
type EndpointKey struct {
	Source           string
	Secret           []byte
	ConnectionString ConnectionString
}

// Endpoints parses the connection strings as the format's SDK reads them
// and groups their keys by endpoint; a key found twice is kept once. Every
// bad connection string is reported, each error naming its source, never
// its value.
func (f Format) Endpoints(list []NamedConnectionString) ([]Endpoint, error) {
	var endpoints []Endpoint
	var problems []error
	for _, ncs := range list {
		cs, err := ParseConnectionString(ncs.Value)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", ncs.Source, err))
			continue
		}
		k, err := f.Key(cs)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", ncs.Source, err))
			continue
		}
		i := slices.IndexFunc(endpoints, func(e Endpoint) bool {
			return slices.Equal(e.Hosts, k.Hosts) && slices.Equal(e.ClientHosts, k.ClientHosts)
		})
		if i < 0 {
			endpoints = append(endpoints, Endpoint{Hosts: k.Hosts, ClientHosts: k.ClientHosts, URL: k.Endpoint})
			i = len(endpoints) - 1
		}
		e := &endpoints[i]
		if slices.ContainsFunc(e.Keys, func(ek EndpointKey) bool { return string(ek.Secret) == string(k.Secret) }) {
			continue // the same key from two sources
		}
		e.Keys = append(e.Keys, EndpointKey{Source: ncs.Source, Secret: k.Secret, ConnectionString: cs})
	}
	return endpoints, errors.Join(problems...)
}

// Keys turns endpoints into the Rewriter's keys.
func Keys(endpoints []Endpoint) []Key {
	var keys []Key
	for _, e := range endpoints {
		for _, k := range e.Keys {
			keys = append(keys, Key{Hosts: e.Hosts, ClientHosts: e.ClientHosts, Endpoint: e.URL, Secret: k.Secret})
		}
	}
	return keys
}
