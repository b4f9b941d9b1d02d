package main

import (
	"sort"
	"strings"
)

// environment is the process environment as given to run, so that tests can
// pass their own and nothing reads os.Getenv behind their back.
type environment map[string]string

// newEnvironment reads KEY=VALUE entries as os.Environ returns them.
func newEnvironment(entries []string) environment {
	env := environment{}
	for _, e := range entries {
		if k, v, ok := strings.Cut(e, "="); ok {
			env[k] = v
		}
	}
	return env
}

func (e environment) lookup(name string) (string, bool) {
	v, ok := e[name]
	return v, ok
}

// namedConnectionString is a connection string and where it came from; the
// source names it in logs and reports, since the value itself never appears.
type namedConnectionString struct {
	source string
	value  string
}

// The settings an Azure Functions app reads its SignalR connection strings
// from. Kubernetes passes app settings as environment variables, where ':' is
// spelt "__".
var (
	singleEndpointVars = []string{
		"AzureSignalRConnectionString",
		"ConnectionStrings__AzureSignalRConnectionString",
		"ConnectionStrings:AzureSignalRConnectionString",
	}
	multiEndpointPrefixes = []string{"Azure__SignalR__Endpoints__", "Azure:SignalR:Endpoints:"}
	webPubSubVars         = []string{"WebPubSubConnectionString"}
)

// connectionStringsFromEnv returns the connection strings the app itself
// would find in the environment: the default setting for the service, and for
// SignalR each Azure__SignalR__Endpoints__<name> (with an optional
// ":primary"/":secondary" or "__primary"/"__secondary" suffix). Sorted by
// variable name so that logs and reports are stable.
func connectionStringsFromEnv(env environment, service string) []namedConnectionString {
	var out []namedConnectionString
	names := singleEndpointVars
	if service == "webpubsub" {
		names = webPubSubVars
	}
	for _, n := range names {
		if v := strings.TrimSpace(env[n]); v != "" {
			out = append(out, namedConnectionString{source: "$" + n, value: v})
		}
	}
	if service != "signalr" {
		return out
	}
	var multi []namedConnectionString
	for k, v := range env {
		for _, p := range multiEndpointPrefixes {
			if len(k) > len(p) && strings.EqualFold(k[:len(p)], p) && strings.TrimSpace(v) != "" {
				multi = append(multi, namedConnectionString{source: "$" + k, value: strings.TrimSpace(v)})
			}
		}
	}
	sort.Slice(multi, func(i, j int) bool { return multi[i].source < multi[j].source })
	return append(out, multi...)
}
